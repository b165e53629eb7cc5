"""ONNX / TorchScript export and the onnxruntime backend, on a small random MobileNet-v2 model."""
import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from refinenet_ros.engine.backends.export import (
    ExportWrapper,
    example_input,
    export_onnx,
    load_fused_model,
)
from refinenet_ros.engine.backends.onnxruntime_backend import OnnxModel, OnnxModelError
from refinenet_ros.models import create_model, normalize_images
from refinenet_ros.tools.export import main

NUM_CLASSES = 5
SIZE = (64, 96)


def _close(got, expected):
    """Logit tolerance relative to the logits' scale, plus the share of identical argmax labels."""
    scale = float(np.abs(expected).max())
    assert float(np.abs(got - expected).max()) <= 1e-4 * scale + 1e-5
    return float((got.argmax(1) == expected.argmax(1)).mean())


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A random model with spread-out BatchNorm statistics and O(1) logits, so that labels
    differ from pixel to pixel and agreement tests mean something."""
    torch.manual_seed(0)
    model = create_model("mbv2", NUM_CLASSES)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    with torch.no_grad():
        model.classifier.weight.mul_(3000)
    path = tmp_path_factory.mktemp("export") / "w.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def fused(weights):
    return load_fused_model("mbv2", str(weights))


@pytest.fixture(scope="module")
def dynamic_onnx(fused, tmp_path_factory):
    model, info = fused
    path = tmp_path_factory.mktemp("export") / "dynamic.onnx"
    export_onnx(ExportWrapper(model), path, info, height=SIZE[0], width=SIZE[1], dynamic=True)
    return path


def test_dynamic_export_matches_pytorch_at_two_sizes_and_batches(dynamic_onnx, fused):
    model, _ = fused
    onnx_model = OnnxModel(dynamic_onnx)
    assert (onnx_model.input_size, onnx_model.batch_size) == (None, None)
    for batch, (h, w) in ((1, SIZE), (3, (80, 112))):
        x = example_input("float_nchw", batch, h, w, seed=batch)
        with torch.no_grad():
            expected = model(x.contiguous(memory_format=torch.channels_last))
        got = onnx_model(x)
        assert got.shape == expected.shape == (batch, NUM_CLASSES, -(-h // 4), -(-w // 4))
        assert got.dtype == torch.float32
        assert len(np.unique(expected.argmax(1).numpy())) > 1  # the labels are not constant
        assert _close(got.numpy(), expected.numpy()) >= 0.999


def test_graph_uses_opset_17_align_corners_resize_and_carries_metadata(dynamic_onnx):
    proto = onnx.load(str(dynamic_onnx))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    resizes = [n for n in proto.graph.node if n.op_type == "Resize"]
    assert len(resizes) == 3  # one per coarser decoder level
    for node in resizes:
        modes = {a.name: a.s.decode() for a in node.attribute if a.type == onnx.AttributeProto.STRING}
        assert modes["coordinate_transformation_mode"] == "align_corners"
        assert modes["mode"] == "linear"
    assert not [n for n in proto.graph.node if n.op_type == "BatchNormalization"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["arch"] == "mbv2" and meta["num_classes"] == str(NUM_CLASSES)
    assert (meta["input_mode"], meta["output_mode"], meta["output_stride"]) == ("float_nchw", "logits", "4")
    dims = [d.dim_param or d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
    assert dims == ["batch", NUM_CLASSES, "out_height", "out_width"]


def test_uint8_input_with_label_output_gives_the_same_labels(fused, tmp_path):
    model, info = fused
    path = tmp_path / "labels.onnx"
    # Static batch of 2 with dynamic size: OnnxModel.run pads/splits other batch sizes.
    export_onnx(ExportWrapper(model, "uint8_nhwc", "labels"), path, info, batch=2,
                height=SIZE[0], width=SIZE[1], dynamic=True)
    onnx_model = OnnxModel(path)
    assert (onnx_model.input_mode, onnx_model.output_mode) == ("uint8_nhwc", "labels")
    assert onnx_model.batch_size == 2
    images = example_input("uint8_nhwc", 3, 72, 100, seed=5)
    labels = onnx_model.run(images.numpy())
    assert labels.dtype == np.uint8 and labels.shape == (3, 72, 100)
    with torch.no_grad():  # the engine's recipe: normalise, logits, bilinear to input size, argmax
        x = normalize_images(images.permute(0, 3, 1, 2)).contiguous(memory_format=torch.channels_last)
        logits = F.interpolate(model(x), size=(72, 100), mode="bilinear", align_corners=False)
    assert (labels == logits.argmax(1).numpy()).mean() >= 0.999
    with pytest.raises(OnnxModelError, match="exported with uint8_nhwc input; the engine feeds float NCHW"):
        onnx_model(torch.zeros(1, 3, 72, 100))
    with pytest.raises(OnnxModelError, match="takes uint8 images"):
        onnx_model.run(images.numpy() / 255.0)


def test_fp16_export_keeps_float32_io_and_the_labels(fused, tmp_path):
    model, info = fused
    path = tmp_path / "fp16.onnx"
    export_onnx(ExportWrapper(model, dtype=torch.float16), path, info, height=SIZE[0], width=SIZE[1])
    proto = onnx.load(str(path))
    assert onnx.TensorProto.FLOAT16 in {t.data_type for t in proto.graph.initializer if t.dims}
    onnx_model = OnnxModel(path)
    assert (onnx_model.precision, onnx_model.input_size) == ("fp16", SIZE)
    x = example_input("float_nchw", 2, *SIZE, seed=4)
    with torch.no_grad():
        expected = model(x).numpy()
    got = onnx_model(x).numpy()
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.abs(got - expected).max() <= 0.02 * np.abs(expected).max()
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.98


@pytest.mark.filterwarnings("ignore:.*torch.jit.load.*:FutureWarning")
def test_cli_static_export_with_parity_report_and_torchscript(weights, fused, tmp_path, capsys):
    onnx_path, ts_path = tmp_path / "static.onnx", tmp_path / "model.pt"
    rc = main(["--arch", "mbv2", "--weights", str(weights), "--output", str(onnx_path), "--height", "64",
               "--width", "96", "--batch", "1", "--torchscript", str(ts_path), "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["precision"], report["num_classes"]) == ("fp32", NUM_CLASSES)
    graph = report["graph"]
    assert graph["inputs"] == [{"name": "input", "dtype": "float32", "shape": [1, 3, 64, 96]}]
    assert graph["outputs"] == [{"name": "logits", "dtype": "float32", "shape": [1, 5, 16, 24]}]
    [row] = report["parity_vs_pytorch_fp32"]  # static: one check at the export size
    assert row["max_abs_diff"] <= 1e-4 * row["max_abs_logit"] and row["label_agreement"] >= 0.999
    assert (OnnxModel(onnx_path).input_size, OnnxModel(onnx_path).batch_size) == ((64, 96), 1)
    traced = torch.jit.load(str(ts_path))
    x = example_input("float_nchw", 2, 80, 112)  # not the traced shape: the trace is shape-generic
    with torch.no_grad():
        got, expected = traced(x), fused[0](x)
    assert got.shape == expected.shape
    assert _close(got.numpy(), expected.numpy()) >= 0.999


def test_segmenter_onnx_backend_matches_pytorch_backend(weights, dynamic_onnx):
    from refinenet_ros import Segmenter
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8),
              rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)]
    by_torch = Segmenter("mbv2", str(weights), device="cpu", precision="fp32", backend="torch").segment(frames)
    onnx_seg = Segmenter("mbv2", str(dynamic_onnx), device="cpu")
    assert (onnx_seg.backend, onnx_seg.num_classes) == ("onnxruntime", NUM_CLASSES)
    by_onnx = onnx_seg.segment(frames)
    for a, b in zip(by_torch, by_onnx):
        assert a.labels.shape == b.labels.shape
        assert len(np.unique(a.labels)) > 1
        assert (a.labels == b.labels).mean() >= 0.999


def test_corrupt_or_missing_files_give_clear_errors(dynamic_onnx, tmp_path, capsys):
    proto = onnx.load(str(dynamic_onnx))
    next(p for p in proto.metadata_props if p.key == "num_classes").value = "[five]"
    onnx.save(proto, str(tmp_path / "meta.onnx"))
    with pytest.raises(ValueError, match="meta.onnx: num_classes must be a positive integer"):
        OnnxModel(tmp_path / "meta.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf \x00\x01\x02" * 10)
    with pytest.raises(OnnxModelError, match="cannot load ONNX model .*bad.onnx"):
        OnnxModel(bad)
    with pytest.raises(OnnxModelError, match="not found"):
        OnnxModel(tmp_path / "missing.onnx")
    with pytest.raises(OnnxModelError, match="device must be"):
        OnnxModel(bad, device="tpu")
    rc = main(["--arch", "mbv2", "--weights", str(tmp_path / "none.pth"),
               "--output", str(tmp_path / "x.onnx")])
    assert rc == 2
    assert "checkpoint not found" in capsys.readouterr().err
    with pytest.raises(ValueError, match="opset"):
        export_onnx(ExportWrapper(create_model("mbv2", 2)), tmp_path / "y.onnx", {}, opset=13)


def test_profile_splits_the_kernel_time_by_model_block_and_operator(dynamic_onnx, capsys):
    from refinenet_ros.tools.profile_onnx import block_of, profile
    from refinenet_ros.tools.profile_onnx import main as profile_main
    assert block_of("/model/decoder/levels.3/crp/convs.0/Conv") == "decoder/levels.3"
    assert block_of("/model/classifier/Conv") == "classifier" and block_of("Transpose_token_4") == "other"
    report = profile(dynamic_onnx, 64, 96, runs=2, warmup=1, threads=1)
    assert report["input_shape"] == [1, 3, 64, 96] and report["total_ms"] > 0
    assert {"classifier", "encoder/stem", "decoder/levels.3"} <= set(report["by_block"])
    assert "Conv" in report["by_op"]
    for table in ("by_block", "by_op"):  # both split the same kernels
        assert sum(report[table].values()) == pytest.approx(report["total_ms"], abs=0.05)
    with pytest.raises(SystemExit, match="refinenet-profile-onnx: .*not found"):
        profile_main([str(dynamic_onnx) + ".missing"])
    profile_main([str(dynamic_onnx), "--height", "64", "--width", "96", "--runs", "1", "--top", "30"])
    assert "decoder/levels.3" in capsys.readouterr().out
