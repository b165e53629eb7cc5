"""The OpenVINO backend: the whole frame pipeline in one compiled graph (uint8 in, labels out)
gives today's labels, its tie rule is max(1)'s, graphs are bounded, exports run as they are."""
import numpy as np
import pytest
import torch

from refinenet_ros import Segmenter
from refinenet_ros.engine.backends.export import ExportWrapper, export_onnx, load_fused_model
from refinenet_ros.models import create_model
from top_class_ties import check_ties_go_to_the_lowest_index

ov = pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from test_engine import sharp_model
    path = tmp_path_factory.mktemp("openvino") / "mbv2_5.pth"
    torch.save(sharp_model(5).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def engines(weights):
    common = {"weights": weights, "device": "cpu", "precision": "fp32"}
    return Segmenter(**common, backend="torch"), Segmenter(**common, backend="openvino")


def scene(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx * yy) % 256], -1)
    return np.clip(base + rng.integers(-30, 30, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("frame_size, input_size, output_resolution", [
    ((64, 96), None, "input"),          # native size
    ((90, 130), (64, 96), "input"),     # resized in the graph, labels back at the frame's size
    ((45, 61), (64, 96), "network"),    # upscaled in the graph, labels at the network size
])
def test_in_graph_pipeline_gives_the_torch_engine_s_labels(engines, frame_size, input_size,
                                                           output_resolution):
    torch_engine, openvino = engines
    frames = [scene(*frame_size, seed=1), scene(*frame_size, seed=2)]
    kwargs = {"input_size": input_size, "output_resolution": output_resolution, "with_confidence": True,
              "overlay_alpha": 0.4}
    for want, got in zip(torch_engine.segment(frames, **kwargs), openvino.segment(frames, **kwargs)):
        assert got.labels.shape == want.labels.shape and got.labels.dtype == np.uint8
        assert np.mean(got.labels == want.labels) >= 0.999
        np.testing.assert_array_equal(got.color, openvino.palette[got.labels])
        assert got.overlay.shape == got.color.shape
        same = got.labels == want.labels
        np.testing.assert_allclose(got.confidence[same], want.confidence[same], atol=2e-3)
    assert openvino.last_timings["preprocess"] == 0.0  # all of it ran inside the graph


@pytest.mark.parametrize("with_confidence", [False, True])
def test_in_graph_top_class_breaks_ties_to_the_lowest_index(with_confidence):
    import openvino.opset13 as ops
    from refinenet_ros.engine.backends.openvino_graph import top_class_nodes as _top_class_nodes
    parameter = ops.parameter([1, 6, 9, 13], np.float32)

    def run(logits, size):
        nodes = _top_class_nodes(parameter.output(0), size, 6, with_confidence)
        compiled = ov.Core().compile_model(ov.Model([ops.result(n) for n in nodes], [parameter]), "CPU",
                                           {"INFERENCE_PRECISION_HINT": "f32"})
        return compiled({0: logits})
    check_ties_go_to_the_lowest_index(run, with_confidence)


def test_graphs_are_bounded_and_an_unusual_frame_s_is_not_kept(engines):
    from refinenet_ros.engine.backends.openvino_backend import MAX_COMPILED
    _, openvino = engines
    network = openvino.network
    for size in [(32, 48), (40, 56), (48, 64), (56, 72), (64, 80), (32, 48), (32, 48)]:
        openvino.segment([scene(*size)])
    assert len(network.compiled_graphs()) <= MAX_COMPILED
    before = network.compiled_graphs()
    result = openvino.segment([scene(400, 600)])[0]  # > 2x the recent median size: a spike
    assert result.labels.shape == (400, 600) and network.compiled_graphs() == before


def test_exports_run_as_they_are(weights, tmp_path, engines):
    torch_engine, _ = engines
    model, info = load_fused_model("mbv2", str(weights))
    export_onnx(ExportWrapper(model), tmp_path / "static.onnx", info, height=64, width=96)
    static = Segmenter(weights=str(tmp_path / "static.onnx"), device="cpu", backend="openvino")
    assert (static.backend, static.precision, static.fixed_input_size) == ("openvino", "fp32", (64, 96))
    frame = [scene(64, 96, seed=3)]
    assert np.mean(static.segment(frame)[0].labels == torch_engine.segment(frame)[0].labels) >= 0.999
    with pytest.raises(ValueError, match="exported in fp32 .* precision='bf16' is not available"):
        Segmenter(weights=str(tmp_path / "static.onnx"), device="cpu", backend="openvino", precision="bf16")


def test_more_than_255_classes_give_uint16_labels(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "w300.pth"
    torch.save(create_model("mbv2", 300).state_dict(), path)
    seg = Segmenter(weights=path, device="cpu", precision="fp32", backend="openvino")
    result = seg.segment([scene(32, 48)])[0]
    assert result.labels.dtype == np.uint16 and result.labels.max() < 300


def test_streams_run_calls_at_once_with_the_labels_of_one_at_a_time(weights):
    from concurrent.futures import ThreadPoolExecutor
    seg = Segmenter(weights=weights, device="cpu", precision="fp32", backend="openvino", streams=2)
    assert seg.streams == 2
    frames = [scene(64, 96, seed=s) for s in range(8)] + [scene(40, 56, seed=9)]
    alone = [seg.segment([frame], with_confidence=True)[0] for frame in frames]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda f: seg.segment([f], with_confidence=True)[0], frames * 2))
    for want, got in zip(alone * 2, together):
        np.testing.assert_array_equal(got.labels, want.labels)
        np.testing.assert_array_equal(got.confidence, want.confidence)


def test_streams_auto_is_two_only_where_two_in_flight_give_younger_labels(weights):
    """One decision (engine/planning/streams.py) for the engine and the node: two calls at once
    only for a backend that overlaps them, on a CPU of two or more cores, where two at once were
    measured at over 5/3 the frames/s of one; an explicit number is honoured."""
    from refinenet_ros.engine.backends import BACKENDS
    from refinenet_ros.engine.planning.streams import resolve_streams, trial_counts
    openvino, torch_ = BACKENDS["openvino"], BACKENDS["torch"]
    assert [resolve_streams("auto", openvino, "cpu", gain=2.0, cores=n) for n in (1, 2, 16)] == [1, 2, 2]
    gains = (None, 0.97, 1.2, 1.66, 1.7)
    assert [resolve_streams("auto", openvino, "cpu", gain=g, cores=2) for g in gains] == [1, 1, 1, 1, 2]
    assert resolve_streams("auto", openvino, "intel_gpu", gain=2.0, cores=8) == 1
    assert resolve_streams(3, openvino, "cpu") == 3 and resolve_streams(2, openvino, "cpu", gain=0.9, cores=2) == 2
    assert resolve_streams(3, torch_, "cpu") == 1
    assert trial_counts("auto", openvino, "cpu", decided=2, cores=2) == [2, 1]
    assert trial_counts(0, openvino, "cpu", decided=1, cores=2) == [1, 2]
    assert trial_counts(1, openvino, "cpu", decided=1, cores=2) == [1]
    assert trial_counts("auto", openvino, "cpu", decided=1, cores=1) == [1]
    assert trial_counts("auto", torch_, "cpu", decided=1, cores=2) == [1]
    unmeasured = Segmenter(weights=weights, device="cpu", precision="fp32", backend="openvino", streams="auto")
    assert unmeasured.streams == unmeasured.plan.streams == 1  # compiled once, for the count it runs
    assert Segmenter(weights=weights, device="cpu", precision="fp32", backend="torch", streams=3).streams == 1
    for bad in (-1, 1.5, "two", True):
        with pytest.raises(ValueError, match="streams must be 'auto' or an integer >= 1"):
            Segmenter(weights=weights, device="cpu", precision="fp32", backend="openvino", streams=bad)


@pytest.mark.parametrize("hint", ["f32", "bf16"])
def test_separable_max_pools_give_the_same_values(repo_root, hint):
    """The shipped int8 model's 16 CRP pools (5x5, stride 1) rewritten as 5x1 then 1x5: every
    output value is bit for bit the same."""
    from refinenet_ros.engine.backends.openvino_graph import separable_max_pools
    core = ov.Core()
    path = str(repo_root / "models" / "camvid_mbv2_int8.onnx")
    original, rewritten = core.read_model(path), core.read_model(path)
    assert separable_max_pools(rewritten) == 16
    assert sum(op.get_type_name() == "MaxPool" for op in rewritten.get_ordered_ops()) == 32
    if hint == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bf16")
    x = (scene(96, 128).transpose(2, 0, 1)[None].astype(np.float32) - 128.0) / 64.0
    outputs = []
    for model in (original, rewritten):
        model.reshape({model.inputs[0]: [1, 3, 96, 128]})
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint})
        outputs.append(compiled.create_infer_request().infer({0: x})[0])
    assert np.array_equal(*outputs)
