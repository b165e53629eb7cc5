"""The two paths a request takes through a network (engine/processing/paths.py), held to the same
results field by field on the OpenVINO and the ONNX Runtime networks: labels, confidence, a label map's merged
confidence, padding to size_multiple, label dtype and colours; and the in-graph path's memory bound
counts the model's classes, which its graph upsamples, not a label map's fewer output classes."""
import numpy as np
import pytest

from refinenet_ros import Segmenter
from refinenet_ros.engine.frames import synthetic_frame
from refinenet_ros.engine.processing import paths
from refinenet_ros.engine.processing.requests import frame_request

NAV2 = "config/label_maps/camvid_nav2.yaml"


@pytest.fixture(scope="module")
def padded_description(tmp_path_factory):
    path = tmp_path_factory.mktemp("description") / "pad16.yaml"
    path.write_text("input: {size_multiple: 16}\n")  # the shipped model, padded up to multiples of 16
    return str(path)


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
@pytest.mark.parametrize("label_map", [None, NAV2])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("size, output_resolution", [(None, "input"), ((200, 264), "network")])
def test_both_paths_give_the_same_results_field_by_field(repo_root, padded_description, backend, label_map,
                                                         padded, size, output_resolution):
    pytest.importorskip(backend)
    seg = Segmenter(weights="default", device="cpu", precision="fp32", backend=backend,
                    label_map=label_map and str(repo_root / label_map),
                    model_info=padded_description if padded else None)
    frames = [synthetic_frame(180, 244, seed=1), synthetic_frame(120, 160, seed=2)]
    request = frame_request(frames, size, output_resolution, None, with_confidence=True, with_color=True)
    assert seg._graph_path.takes(request)
    in_graph, _ = seg._graph_path.run(request)
    tensors, _ = seg._tensor_path.run(request)
    for frame, graph, tensor in zip(frames, in_graph, tensors):
        expected_shape = frame.shape[:2] if output_resolution == "input" else size
        assert graph.labels.shape == tensor.labels.shape == tuple(expected_shape)
        assert graph.labels.dtype == tensor.labels.dtype == seg.classes.dtype
        same = graph.labels == tensor.labels
        assert same.mean() >= 0.995, f"{100 * same.mean():.2f}% of labels agree"
        assert graph.confidence.dtype == tensor.confidence.dtype == np.float32
        np.testing.assert_allclose(graph.confidence[same], tensor.confidence[same], atol=5e-3)
        for result in (graph, tensor):
            np.testing.assert_array_equal(result.color, seg.palette[result.labels])
            assert 0.0 < result.confidence.min() and result.confidence.max() <= 1.0 + 1e-6
    if label_map:  # merged confidence: at least the top model class's probability, so at least 1/11
        assert all(r.confidence.min() >= 1.0 / 11 - 1e-6 for r in in_graph + tensors)


def test_the_in_graph_bound_counts_the_model_classes_not_the_output_classes(repo_root, monkeypatch):
    pytest.importorskip("openvino")
    seg = Segmenter(weights="default", device="cpu", precision="fp32", backend="openvino",
                    label_map=str(repo_root / NAV2))
    assert (seg.num_classes, seg.network.model_classes) == (3, 11)
    frame = synthetic_frame(100, 120)
    request = frame_request([frame], None, "input", None, with_confidence=True, with_color=False)
    monkeypatch.setattr(paths, "MAX_SCORE_ELEMENTS", 100 * 120 * 5)  # 3 output classes fit, 11 do not
    assert not seg._graph_path.takes(request)
    bounded = seg.segment([frame], with_confidence=True)[0]  # the tensor path, class by class
    monkeypatch.setattr(paths, "MAX_SCORE_ELEMENTS", 100 * 120 * 11)
    assert seg._graph_path.takes(request)
    whole = seg.segment([frame], with_confidence=True)[0]
    assert (bounded.labels == whole.labels).mean() >= 0.995
