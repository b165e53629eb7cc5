"""The Segmenter engine on small random-init models: batching, shapes, palettes, precision,
multi-scale, helpers and error messages (real forward passes, no mocks)."""
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from refinenet_ros import SegmentationResult, Segmenter
from refinenet_ros.engine import overlay
from refinenet_ros.engine.backends import BACKENDS
from refinenet_ros.ros.encodings import to_rgb
from refinenet_ros.engine.model.palette import check_palette, voc_palette
from refinenet_ros.models import create_model, normalize_images

NUM_CLASSES = 5
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def sharp_model(num_classes, seed=0):
    """A random model with confident, varied predictions (the default init's logits are
    nearly uniform, so near-ties would make agreement tests meaningless)."""
    torch.manual_seed(seed)
    model = create_model("mbv2", num_classes)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            m.weight.data.mul_(0.7)
        elif isinstance(m, nn.BatchNorm2d):  # non-trivial statistics, so that folding matters
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def model():
    return sharp_model(NUM_CLASSES)


@pytest.fixture(scope="module")
def weights(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("engine") / "mbv2_5.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module", params=["torch", "onnxruntime", "openvino"])
def segmenter(weights, request):
    """The fp32 engine on each CPU backend (OpenVINO runs the whole pipeline in its graph)."""
    pytest.importorskip(request.param)
    seg = Segmenter(weights=weights, device="cpu", precision="fp32", backend=request.param)
    assert (seg.backend, seg.precision) == (request.param, "fp32")
    return seg


def frames(*sizes, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for h, w in sizes:  # smooth structure plus noise, like a (very) abstract scene
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256], -1)
        out.append(np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8))
    return out


def reference_labels(model, frame):
    """The unfused fp32 model, one frame, CPU: what the engine must reproduce."""
    with torch.no_grad():
        x = normalize_images(torch.from_numpy(frame).permute(2, 0, 1)[None])
        logits = F.interpolate(model(x), size=frame.shape[:2], mode="bilinear", align_corners=False)
    return logits.argmax(1)[0].numpy()


def test_fused_fp32_matches_unfused_model(segmenter, model):
    images = frames((64, 96), (61, 83))
    for image, result in zip(images, segmenter.segment(images)):
        expected = reference_labels(model, image)
        assert len(np.unique(expected)) > 1, "fixture model should predict several classes"
        np.testing.assert_array_equal(result.labels, expected)


def test_batch_equals_one_by_one(segmenter):
    images = frames((64, 96), (48, 80), (64, 96), (64, 96), seed=1)
    batched = segmenter.segment(images, with_confidence=True)
    assert len(batched) == len(images)
    for image, result in zip(images, batched):
        single = segmenter.segment([image], with_confidence=True)[0]
        np.testing.assert_array_equal(result.labels, single.labels)
        np.testing.assert_array_equal(result.color, single.color)
        np.testing.assert_allclose(result.confidence, single.confidence, rtol=1e-4, atol=1e-5)


def test_fixed_input_size_batches_mixed_frame_sizes(weights):
    seg = Segmenter(weights=weights, device="cpu", input_size=(64, 96))
    images = frames((161, 203), (64, 96), (30, 40), seed=2)
    batched = seg.segment(images)
    for image, result in zip(images, batched):
        assert result.labels.shape == image.shape[:2]
        np.testing.assert_array_equal(result.labels, seg.segment([image])[0].labels)


@pytest.mark.parametrize("input_size", [None, (64, 96)])
def test_output_shapes_for_odd_sizes(weights, input_size):
    seg = Segmenter(weights=weights, device="cpu", input_size=input_size)
    image = frames((161, 203))[0]
    network = input_size or (161, 203)
    for resolution, (h, w) in (("input", (161, 203)), ("network", network)):
        result = seg.segment([image], output_resolution=resolution, with_confidence=True)[0]
        if resolution == "network":
            assert seg.segment([image], output_resolution=resolution)[0].confidence is None
        assert isinstance(result, SegmentationResult)
        assert result.labels.shape == (h, w) and result.labels.dtype == np.uint8
        assert result.color.shape == (h, w, 3) and result.color.dtype == np.uint8
        assert result.confidence.shape == (h, w) and result.confidence.dtype == np.float32
        assert 1.0 / NUM_CLASSES - 1e-5 <= result.confidence.min() <= result.confidence.max() <= 1.0 + 1e-6
        assert result.labels.max() < NUM_CLASSES


def test_palette_applied(weights):
    palette = np.array([[10, 20, 30], [40, 50, 60], [70, 80, 90], [1, 2, 3], [4, 5, 6], [7, 8, 9]])
    seg = Segmenter(weights=weights, device="cpu", palette=palette, class_names=list("abcde"))
    result = seg.segment(frames((64, 96)))[0]
    np.testing.assert_array_equal(result.color, palette[:NUM_CLASSES][result.labels])
    assert seg.palette.dtype == np.uint8 and seg.palette.shape == (NUM_CLASSES, 3)
    assert seg.class_names == list("abcde")


def test_generated_palette_is_pascal_voc(segmenter):
    np.testing.assert_array_equal(voc_palette(4), [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]])
    assert len({tuple(c) for c in voc_palette(300)}) == 300
    np.testing.assert_array_equal(segmenter.palette, voc_palette(NUM_CLASSES))
    assert segmenter.class_names == [f"class_{i}" for i in range(NUM_CLASSES)]


def test_bad_palette(weights):
    for palette, message in ((np.zeros((5, 4)), "K x 3"), (np.full((5, 3), 300), "0..255"),
                             (np.full((5, 3), 0.5), "integers"), ([[0, 0, "x"]] * 5, "numbers")):
        with pytest.raises(ValueError, match=message):
            check_palette(palette, NUM_CLASSES)
    with pytest.raises(ValueError, match="3 colours but the model has 5 classes"):
        Segmenter(weights=weights, device="cpu", palette=np.zeros((3, 3)))


def test_more_than_255_classes_gives_uint16_labels(tmp_path):
    path = tmp_path / "w300.pth"
    torch.save(sharp_model(300).state_dict(), path)
    seg = Segmenter(weights=path, device="cpu")
    assert seg.num_classes == 300
    result = seg.segment(frames((32, 48)))[0]
    assert result.labels.dtype == np.uint16 and result.labels.max() < 300
    np.testing.assert_array_equal(result.color, seg.palette[result.labels])


@pytest.mark.parametrize("images, error, message", [
    (np.zeros((8, 8, 3), np.uint8), TypeError, "wrap a single frame in a list"),
    ("frame.png", TypeError, "list of H x W x 3"),
    ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.float32)], TypeError, "image 1: .*uint8"),
    ([np.zeros((8, 8, 4), np.uint8)], ValueError, "image 0: .*shape \\(8, 8, 4\\)"),
    ([np.zeros((8, 8), np.uint8)], ValueError, "image 0: expected H x W x 3"),
    ([np.zeros((0, 8, 3), np.uint8)], ValueError, "image 0: empty"),
    ([[[0, 0, 0]]], TypeError, "image 0: expected a numpy array"),
])
def test_bad_images_raise_clear_errors(segmenter, images, error, message):
    with pytest.raises(error, match=message):
        segmenter.segment(images)


def test_bad_arguments_raise_clear_errors(weights, segmenter):
    with pytest.raises(ValueError, match="unknown arch 'vgg'"):
        Segmenter(arch="vgg", weights=None, device="cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        Segmenter(weights=weights, device="tpu")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        Segmenter(weights=weights, device="cpu", precision="fp8")
    with pytest.raises(ValueError, match="'fp16' is not supported on the CPU"):
        Segmenter(weights=weights, device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="input_size"):
        Segmenter(weights=weights, device="cpu", input_size=(0, 10))
    with pytest.raises(ValueError, match="scales"):
        Segmenter(weights=weights, device="cpu", scales=())
    with pytest.raises(ValueError, match="7 classes named by num_classes but .* has 5 classes"):
        Segmenter(weights=weights, device="cpu", num_classes=7)
    with pytest.raises(ValueError, match="3 class names given for 5 classes"):
        Segmenter(weights=weights, device="cpu", class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="output_resolution"):
        segmenter.segment(frames((8, 8)), output_resolution="full")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Segmenter(weights=weights, device="cuda:0")


def test_missing_or_corrupt_weights(tmp_path):
    with pytest.raises((FileNotFoundError, ValueError), match="nope.pth"):
        Segmenter(weights=tmp_path / "nope.pth", device="cpu")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt.pth"):
        Segmenter(weights=corrupt, device="cpu")


def test_default_weights(tmp_path):
    from refinenet_ros.engine.model.shipped import model_metadata
    meta = model_metadata()
    if not __import__("os").path.isfile(meta["weights"]):
        with pytest.raises(FileNotFoundError, match="default model weights .* not found"):
            Segmenter(device="cpu")
        return
    seg = Segmenter(device="cpu")
    assert seg.num_classes == meta["num_classes"] and seg.class_names == meta["classes"]
    np.testing.assert_array_equal(seg.palette, meta["palette"])
    assert seg.segment(frames((36, 48)))[0].labels.shape == (36, 48)


def test_batch_array_and_read_only_frames(segmenter):
    images = frames((32, 48), (32, 48), seed=3)
    read_only = [np.frombuffer(f.tobytes(), np.uint8).reshape(f.shape) for f in images]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_buffers = segmenter.segment(read_only)
    from_array = segmenter.segment(np.stack(images))
    for a, b in zip(from_buffers, from_array):
        np.testing.assert_array_equal(a.labels, b.labels)


def test_cpu_bf16_agrees_with_fp32(weights, segmenter):
    bf16 = Segmenter(weights=weights, device="cpu", precision="bf16")
    assert bf16.precision == "bf16" and segmenter.precision == "fp32"
    image = frames((48, 64), seed=4)
    agreement = np.mean(bf16.segment(image)[0].labels == segmenter.segment(image)[0].labels)
    assert agreement >= 0.99


def test_multiscale_with_one_scale_equals_plain(weights, segmenter):
    images = frames((64, 96), (61, 83), seed=5)
    plain = segmenter.segment(images)
    same = {"weights": weights, "device": "cpu", "precision": "fp32", "backend": segmenter.backend}
    one_scale = Segmenter(**same, scales=[1.0], flip=False).segment(images)
    # Averaging two identical probability maps exercises the msc path without changing labels.
    twice = Segmenter(**same, scales=[1.0, 1.0]).segment(images)
    for a, b, c in zip(plain, one_scale, twice):
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.labels, c.labels)


def test_multiscale_and_flip_shapes(weights):
    seg = Segmenter(weights=weights, device="cpu", scales=(0.75, 1.0), flip=True)
    images = frames((61, 83), (64, 96), seed=6)
    for image, result in zip(images, seg.segment(images, with_confidence=True)):
        assert result.labels.shape == image.shape[:2] and result.color.shape == image.shape
        assert result.labels.max() < NUM_CLASSES
        assert 0.0 < result.confidence.min() <= result.confidence.max() <= 1.0 + 1e-6
    net = seg.segment(images, output_resolution="network")
    assert net[0].labels.shape == (61, 83)


def test_to_rgb_helpers():
    rgb = frames((5, 7))[0]
    assert to_rgb(rgb, "rgb8") is rgb
    np.testing.assert_array_equal(to_rgb(np.ascontiguousarray(rgb[:, :, ::-1]), "bgr8"), rgb)
    rgba = np.dstack([rgb, np.full((5, 7), 9, np.uint8)])
    np.testing.assert_array_equal(to_rgb(rgba, "rgba8"), rgb)
    np.testing.assert_array_equal(to_rgb(np.ascontiguousarray(rgba[:, :, [2, 1, 0, 3]]), "bgra8"), rgb)
    mono = rgb[:, :, 0].copy()
    for image in (mono, mono[:, :, None]):
        out = to_rgb(image, "mono8")
        assert out.shape == (5, 7, 3) and all(np.array_equal(out[:, :, c], mono) for c in range(3))
    with pytest.raises(ValueError, match="unsupported encoding 'yuv422'"):
        to_rgb(rgb, "yuv422")
    with pytest.raises(ValueError, match="rgba8 image must be H x W x 4"):
        to_rgb(rgb, "rgba8")
    with pytest.raises(TypeError, match="uint8"):
        to_rgb(rgb.astype(np.uint16), "rgb8")


def test_overlay_helper():
    rgb = np.full((4, 6, 3), 100, np.uint8)
    color = np.full((4, 6, 3), 200, np.uint8)
    np.testing.assert_array_equal(overlay(rgb, color, 0.0), rgb)
    np.testing.assert_array_equal(overlay(rgb, color, 1.0), color)
    assert np.all(np.abs(overlay(rgb, color, 0.5).astype(int) - 150) <= 1)
    with pytest.raises(ValueError, match="differ in size"):
        overlay(rgb, color[:2], 0.5)
    with pytest.raises(ValueError, match="alpha"):
        overlay(rgb, color, 1.5)


def test_import_is_light():
    code = ("import sys, refinenet_ros; assert 'torch' not in sys.modules and 'rclpy' not in sys.modules; "
            "from refinenet_ros import Segmenter; assert 'rclpy' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_compile_keeps_labels(weights, segmenter):
    image = frames((64, 96), seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a silent fallback to eager would hide a broken compile
        compiled = Segmenter(weights=weights, device="cpu", precision="fp32", input_size=(64, 96),
                             compile=True)
    assert compiled.network.compiled is not None
    np.testing.assert_array_equal(compiled.segment(image)[0].labels, segmenter.segment(image)[0].labels)


@cuda_only
@pytest.mark.parametrize("precision, min_agreement", [("fp32", 0.999), ("auto", 0.99)])
def test_cuda_agrees_with_cpu(weights, segmenter, precision, min_agreement):
    seg = Segmenter(weights=weights, device="cuda", precision=precision)
    assert seg.device.type == "cuda" and seg.precision == ("fp16" if precision == "auto" else "fp32")
    images = frames((64, 96), (61, 83), (64, 96), seed=8)
    for a, b in zip(seg.segment(images, with_confidence=True), segmenter.segment(images)):
        assert a.labels.shape == b.labels.shape and a.confidence.dtype == np.float32
        assert np.mean(a.labels == b.labels) >= min_agreement


@cuda_only
@pytest.mark.slow
def test_cuda_graphs_keep_labels(weights):
    image = frames((64, 96), seed=9)
    eager = Segmenter(weights=weights, device="cuda", precision="fp32")
    graphs = Segmenter(weights=weights, device="cuda", precision="fp32", input_size=(64, 96), compile=True)
    for _ in range(3):  # repeated calls replay the captured graph
        assert np.mean(graphs.segment(image)[0].labels == eager.segment(image)[0].labels) >= 0.999


def test_onnxruntime_backend_labels_equal_the_torch_backend(tmp_path):
    """backend="onnxruntime" exports the fused model on the fly; same labels, any frame size."""
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    weights = tmp_path / "w.pth"
    torch.save(create_model("mbv2", 5).state_dict(), weights)
    reference = Segmenter(weights=str(weights), device="cpu", precision="fp32", backend="torch")
    exported = Segmenter(weights=str(weights), device="cpu", precision="fp32", backend="onnxruntime")
    assert exported.backend == "onnxruntime" and exported.num_classes == 5
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, size, dtype=np.uint8) for size in ((64, 96, 3), (65, 97, 3), (64, 96, 3))]
    for a, b in zip(reference.segment(frames), exported.segment(frames)):
        assert a.labels.shape == b.labels.shape
        assert np.mean(a.labels == b.labels) >= 0.999
    with pytest.raises(ValueError, match="backend must be one of"):
        Segmenter(weights=str(weights), device="cpu", backend="tensorrt")


@pytest.mark.parametrize("classes", [5, 300])
def test_top_class_class_by_class_equals_all_classes_at_once(classes):
    from refinenet_ros.engine.processing.upsample import top_class
    torch.manual_seed(0)
    logits = torch.randn(2, classes, 9, 13)
    logits[:, 1] = logits[:, 0]  # exact ties: the lower index wins on both paths
    for size in [(9, 13), (37, 50)]:
        for with_confidence in (False, True):
            labels, confidence = top_class(logits, size, with_confidence)
            by_class, by_class_confidence = top_class(logits, size, with_confidence, max_elements=0)
            assert by_class.dtype == torch.int32
            np.testing.assert_array_equal(by_class.long().numpy(), labels.numpy())
            if with_confidence:
                np.testing.assert_allclose(by_class_confidence.numpy(), confidence.numpy(), rtol=1e-5)
            else:
                assert confidence is None and by_class_confidence is None
    assert (top_class(logits, (9, 13))[0] != 1).all()


def test_large_outputs_go_class_by_class_with_the_same_results(weights, monkeypatch):
    import refinenet_ros.engine.processing.upsample as upsample
    seg = Segmenter(weights=weights, device="cpu", backend="torch")
    images = frames((64, 96), (61, 83), seed=3)
    expected = seg.segment(images, with_confidence=True, overlay_alpha=0.5)
    monkeypatch.setattr(upsample, "MAX_SCORE_ELEMENTS", 0)  # every output counts as large
    for want, got in zip(expected, seg.segment(images, with_confidence=True, overlay_alpha=0.5)):
        assert got.labels.dtype == want.labels.dtype == np.uint8
        np.testing.assert_array_equal(got.labels, want.labels)
        np.testing.assert_array_equal(got.color, want.color)
        np.testing.assert_array_equal(got.overlay, want.overlay)
        np.testing.assert_allclose(got.confidence, want.confidence, rtol=1e-5)


def test_frames_bigger_than_the_network_input_are_shrunk_before_normalising(segmenter, model):
    """Bilinear resizing and normalisation commute; shrinking first only moves float rounding."""
    image = frames((128, 192), seed=4)[0]
    result = segmenter.segment([image], input_size=(64, 96), output_resolution="network")[0]
    with torch.no_grad():
        x = normalize_images(torch.from_numpy(image).permute(2, 0, 1)[None])
        x = F.interpolate(x, size=(64, 96), mode="bilinear", align_corners=False)
        logits = F.interpolate(model(x), size=(64, 96), mode="bilinear", align_corners=False)
    assert (result.labels == logits.argmax(1)[0].numpy()).mean() >= 0.999


def test_colours_are_left_out_on_request_unless_the_overlay_needs_them(weights):
    """A robot that consumes labels alone does not pay for the palette lookup."""
    frame = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    for backend in [name for name, spec in BACKENDS.items() if spec.installed()]:
        segmenter = Segmenter(weights=weights, device="cpu", precision="fp32", backend=backend)
        full, bare = segmenter.segment([frame])[0], segmenter.segment([frame], with_color=False)[0]
        assert bare.color is None and np.array_equal(bare.labels, full.labels), backend
        blended = segmenter.segment([frame], with_color=False, overlay_alpha=0.5)[0]
        np.testing.assert_array_equal(blended.color, full.color)


@pytest.mark.parametrize("kind", ["directory", "device", "empty .pth", "empty .onnx"])
def test_weights_that_are_no_file_to_read_say_so(tmp_path, kind):
    path = {"directory": tmp_path, "device": "/dev/zero", "empty .pth": tmp_path / "w.pth",
            "empty .onnx": tmp_path / "w.onnx"}[kind]
    if kind.startswith("empty"):
        path.write_bytes(b"")
    reason = {"directory": "is a directory, not a file", "device": "is not a regular file",
              "empty .pth": "is empty (0 bytes", "empty .onnx": "is empty (0 bytes"}[kind]
    with pytest.raises(ValueError, match=reason.replace("(", r"\(")):
        Segmenter(weights=str(path), device="cpu")
