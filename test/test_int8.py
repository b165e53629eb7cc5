"""int8: static quantisation of exports (quantize.py), `refinenet-export --int8`, the engine's
`precision="int8"` and backend choice, and the shipped int8 model against fp32 on CamVid."""
import os

import cv2
import numpy as np
import onnx
import pytest
import torch
from conftest import randomise_batchnorm

from refinenet_ros import Segmenter
from refinenet_ros.engine.backends.export import ExportWrapper, export_onnx, load_fused_model
from refinenet_ros.engine.frames import frame_paths, read_frames
from refinenet_ros.training.quantize import FLOAT_LAYERS, quantize_onnx
from refinenet_ros.models import create_model
from refinenet_ros.tools.export import main as export_main

pytest.importorskip("onnxruntime")
NUM_CLASSES = 4


def scene(h, w, seed):
    """Coloured rectangles on a gradient with noise: regions a model can label consistently."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), np.full((h, w), 128)], -1).astype(float)
    for _ in range(4):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        image[y:y + rng.integers(8, h // 2), x:x + rng.integers(8, w // 2)] = rng.integers(0, 256, 3)
    return np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    model = randomise_batchnorm(create_model("mbv2", NUM_CLASSES))
    with torch.no_grad():
        model.classifier.weight.mul_(1000)  # O(1) logits: labels vary from pixel to pixel
    path = tmp_path_factory.mktemp("int8") / "w.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    for i in range(8):
        cv2.imwrite(str(folder / f"{i:02d}.png"), cv2.cvtColor(scene(72, 96, i), cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="module")
def int8_onnx(weights, frames_dir, tmp_path_factory):
    model, info = load_fused_model("mbv2", str(weights))
    folder = tmp_path_factory.mktemp("int8_onnx")
    export_onnx(ExportWrapper(model), folder / "fp32.onnx", info, height=72, width=96, dynamic=True)
    return quantize_onnx(folder / "fp32.onnx", folder / "int8.onnx", read_frames(frames_dir, 4))


def test_quantised_graph_keeps_the_first_layers_float_and_says_so(int8_onnx):
    proto = onnx.load(str(int8_onnx))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["precision"] == "int8" and meta["num_classes"] == str(NUM_CLASSES)
    assert meta["int8_calibration_frames"] == "4"
    convs = {n.name: n for n in proto.graph.node if n.op_type == "Conv"}
    dequantized = {n.output[0] for n in proto.graph.node if n.op_type == "DequantizeLinear"}
    quantized = [name for name, n in convs.items() if n.input[1] in dequantized]
    floats = [name for name, n in convs.items() if n.input[1] not in dequantized]
    assert floats and all(any(f in name for f in FLOAT_LAYERS) for name in floats)
    assert len(quantized) > 3 * len(floats)  # the rest of the network is int8
    assert not os.path.exists(f"{int8_onnx}.partial")


def test_segmenter_runs_an_int8_export_close_to_fp32(weights, int8_onnx):
    int8 = Segmenter(weights=str(int8_onnx), device="cpu")
    assert (int8.backend, int8.precision, int8.num_classes) == ("onnxruntime", "int8", NUM_CLASSES)
    assert Segmenter(weights=str(int8_onnx), device="cpu", precision="int8").precision == "int8"
    fp32 = Segmenter(weights=str(weights), device="cpu", backend="torch")
    images = [scene(72, 96, 20), scene(61, 87, 21)]  # not calibration frames; one odd size
    for a, b in zip(int8.segment(images), fp32.segment(images)):
        assert a.labels.shape == b.labels.shape and a.labels.dtype == np.uint8
        assert len(np.unique(b.labels)) > 1
        assert np.mean(a.labels == b.labels) >= 0.9  # a random model is far less robust than a trained one


def test_int8_errors_say_what_to_do(weights, int8_onnx, tmp_path):
    with pytest.raises(ValueError, match="refinenet-export --weights .* --int8 FRAMES"):
        Segmenter(weights=str(weights), device="cpu", precision="int8")
    with pytest.raises(ValueError, match="exported in int8 .*'auto' or 'int8'"):
        Segmenter(weights=str(int8_onnx), device="cpu", precision="fp32")
    model, info = load_fused_model("mbv2", str(weights))
    export_onnx(ExportWrapper(model), tmp_path / "fp32.onnx", info, height=72, width=96)
    with pytest.raises(ValueError, match="exported in fp32"):
        Segmenter(weights=str(tmp_path / "fp32.onnx"), device="cpu", precision="int8")
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        Segmenter(weights=str(weights), device="cpu", precision="int4")
    with pytest.raises(ValueError, match="at least one frame"):
        quantize_onnx(tmp_path / "fp32.onnx", tmp_path / "x.onnx", [])
    with pytest.raises(FileNotFoundError, match="neither a folder, a list file nor a video"):
        frame_paths(tmp_path / "missing")


def test_frame_lists_resolve_relative_to_the_list(frames_dir, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{frames_dir.name}/{i:02d}.png annot/{i:02d}.png\n" for i in range(3)))
    os.symlink(frames_dir, tmp_path / frames_dir.name)
    assert [p.name for p in frame_paths(listing)] == ["00.png", "01.png", "02.png"]
    # offsets 0 and 1 give disjoint, evenly spread frames (calibration vs agreement check)
    a, b = read_frames(frames_dir, 4, offset=0), read_frames(frames_dir, 4, offset=1)
    assert len(a) == len(b) == 4 and not any(np.array_equal(x, y) for x in a for y in b)


def test_frames_are_sampled_evenly_from_a_video(tmp_path):
    import cv2
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for level in range(0, 250, 25):  # 10 frames, each one grey level
        writer.write(np.full((48, 64, 3), level, np.uint8))
    writer.release()
    grey = lambda frames: [round(float(f.mean()) / 25) * 25 for f in frames]  # MJPG is lossy
    assert grey(read_frames(path, 5)) == [0, 50, 100, 150, 200]
    assert grey(read_frames(path, 5, offset=1)) == [25, 75, 125, 175, 225]
    assert read_frames(path, 5)[0].shape == (48, 64, 3)
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="cannot read video .*broken.mp4"):
        read_frames(tmp_path / "broken.mp4", 2)


def test_export_cli_int8_checks_agreement_and_removes_a_failed_model(weights, frames_dir, tmp_path, capsys):
    out = tmp_path / "m_int8.onnx"
    common = ["--weights", str(weights), "--arch", "mbv2", "--height", "72", "--width", "96",
              "--output", str(out), "--int8", str(frames_dir), "--calibration-frames", "4"]
    assert export_main(common + ["--min-agreement", "0.5"]) == 0
    assert "int8: calibrated on 4 frames; labels identical to fp32 on" in capsys.readouterr().out
    assert Segmenter(weights=str(out), device="cpu").precision == "int8"
    assert export_main(common + ["--min-agreement", "1.01"]) == 1
    assert "below --min-agreement" in capsys.readouterr().err and not out.exists()
    assert export_main(common + ["--labels"]) == 2
    assert "--int8 exports float input and logits" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_shipped_int8_model_labels_99_percent_of_camvid_pixels_as_fp32(camvid_root, backend):
    pytest.importorskip(backend)
    int8 = Segmenter(weights="default", device="cpu", precision="int8", backend=backend)
    fp32 = Segmenter(weights="default", device="cpu", precision="fp32", backend="torch")
    assert int8.precision == "int8" and int8.class_names == fp32.class_names
    images = read_frames(camvid_root / "val.txt", 12)
    same = sum(int(np.sum(a.labels == b.labels)) for a, b in zip(int8.segment(images), fp32.segment(images)))
    assert same / sum(image.shape[0] * image.shape[1] for image in images) >= 0.99


def test_auto_precision_on_a_cpu_picks_the_shipped_int8_model_and_says_why():
    auto = Segmenter(weights="default", device="cpu")
    assert auto.precision == "int8" and auto.backend in ("onnxruntime", "openvino")
    assert "an int8 model exists" in auto.plan.reason
    assert Segmenter(weights="default", device="cpu", precision="fp32").precision == "fp32"
    assert Segmenter(weights="default", device="cpu", backend="torch").precision == "fp32"
