"""The ONNX Runtime backend's whole frame (engine/backends/onnxruntime_graph.py): the graphs before
and after the model give the torch code's input, labels and confidence (ties to the lowest class,
as max(1)), a labels model's nearest labels, uint16 labels above 255 classes, one session for
every size; and a Segmenter on it segments without importing torch."""
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch

from refinenet_ros import Segmenter
from refinenet_ros.engine.backends.onnxruntime_graph import FrameSessions, postprocess_graph
from refinenet_ros.engine.hardware.devices import Device
from refinenet_ros.engine.model.description import InputSpec, ModelDescription
from refinenet_ros.engine.processing.preprocess import Preprocessor
from refinenet_ros.engine.processing.upsample import nearest_labels
from refinenet_ros.models import create_model
from top_class_ties import check_ties_go_to_the_lowest_index


def session(graph):
    return ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])


def description(input_fields=None, output="logits"):
    return ModelDescription("test", num_classes=6, input=InputSpec(**(input_fields or {})), output=output)


@pytest.mark.parametrize("input_fields", [{}, {"color_order": "bgr", "scale": 1.0, "mean": (100, 110, 120),
                                               "std": (50, 60, 70), "size_multiple": 16}])
@pytest.mark.parametrize("frame_size, network_size", [((48, 64), (48, 64)), ((90, 130), (45, 61)),
                                                      ((30, 41), (64, 96))])
def test_the_graph_before_the_model_gives_the_torch_code_s_input(input_fields, frame_size, network_size):
    spec = description(input_fields).input
    frame = np.random.default_rng(0).integers(0, 256, (*frame_size, 3), np.uint8)
    got = FrameSessions(description(input_fields)).preprocess(frame, network_size)
    torch_input = Preprocessor(spec, Device("cpu"))
    want = torch_input.network_input(torch_input.resized(torch.from_numpy(frame[None]), network_size), network_size)
    assert got.shape == tuple(want.shape) == (1, 3, *spec.padded(network_size))
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)  # resizes differ in float rounding only


@pytest.mark.parametrize("with_confidence", [False, True])
def test_the_top_class_breaks_ties_to_the_lowest_index(with_confidence):
    post = session(postprocess_graph(description(), with_confidence))

    def run(logits, size):
        outputs = post.run(None, {"scores": logits, "kept": np.array([9, 13], np.int64),
                                  "sizes": np.array([1, 6, *size], np.int64)})
        assert outputs[0].dtype == np.uint8 and len(outputs) == 1 + with_confidence
        return outputs
    check_ties_go_to_the_lowest_index(run, with_confidence)


def test_a_labels_model_s_labels_are_cropped_and_upsampled_nearest():
    labels = torch.from_numpy(np.random.default_rng(1).integers(0, 6, (1, 12, 17)))
    post = session(postprocess_graph(description(output="labels"), with_confidence=False))
    got = post.run(None, {"scores": labels[:, None].numpy(), "kept": np.array([10, 15], np.int64),
                          "sizes": np.array([1, 1, 41, 57], np.int64)})[0]
    np.testing.assert_array_equal(got[0], nearest_labels(labels[:, :10, :15], (41, 57))[0].numpy())


def test_more_than_255_classes_give_uint16_labels(tmp_path):
    torch.manual_seed(0)
    torch.save(create_model("mbv2", 300).state_dict(), tmp_path / "w300.pth")
    seg = Segmenter(weights=tmp_path / "w300.pth", device="cpu", precision="fp32", backend="onnxruntime")
    result = seg.segment([np.zeros((32, 48, 3), np.uint8)], with_confidence=True)[0]
    assert result.labels.dtype == np.uint16 and result.labels.max() < 300
    assert seg.last_timings["preprocess"] == 0.0  # the whole frame ran in ONNX Runtime


def test_one_session_serves_every_size_only_variants_add_sessions_and_idle_frees_them(repo_root):
    seg = Segmenter(weights="default", device="cpu", precision="int8", backend="onnxruntime")
    sessions = seg.network._frame_sessions._sessions
    for size in [(40, 56), (64, 80), (120, 160), (41, 57)]:
        frame = np.random.default_rng(size[0]).integers(0, 256, (*size, 3), np.uint8)
        assert seg.segment([frame], with_confidence=True)[0].labels.shape == size
    assert sorted(sessions, key=str) == [("post", True, None), ("pre", False)]
    seg.segment([np.zeros((40, 56, 3), np.uint8)], input_size=(32, 48))
    assert len(sessions) == 4  # a resize, no confidence
    seg.network.release_memory()  # idle: the sessions go with their arenas, and come back when asked
    assert not sessions and seg.segment([np.zeros((40, 56, 3), np.uint8)])[0].labels.shape == (40, 56)


def test_without_torch_installed_the_shipped_int8_model_runs_and_float_weights_say_why_not(repo_root, tmp_path):
    """Even outputs too large for the graph's unbounded memory run there (the bounded path needs
    torch); several scales, which average in torch, are refused at once."""
    from test_node_process import without_torch
    code = ("import numpy as np; from refinenet_ros import Segmenter\n"
            "seg = Segmenter(weights='default', device='cpu', backend='onnxruntime')\n"
            "assert seg.precision == 'int8' and seg.segment([np.zeros((64, 96, 3), np.uint8)])[0].labels.shape == (64, 96)\n"
            "from refinenet_ros.engine.processing import paths; paths.MAX_SCORE_ELEMENTS = 1000\n"
            "assert seg.segment([np.zeros((64, 96, 3), np.uint8)])[0].labels.shape == (64, 96)  # not bounded, but labels\n"
            "try:\n    Segmenter(weights='default', device='cpu', backend='onnxruntime', scales=(1.0, 0.5))\n"
            "except ValueError as e:\n    assert 'torch is not installed: run one scale without flip' in str(e), e\n"
            "else:\n    raise AssertionError('scales without torch')\n"
            "Segmenter(weights='default', device='cpu', precision='fp32')")
    environment = {**os.environ, "REFINENET_ROS_AUTOTUNE": "0"}
    environment["PYTHONPATH"] = without_torch(tmp_path)["PYTHONPATH"] + os.pathsep + str(repo_root)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=repo_root, env=environment)
    assert done.returncode == 1 and "Error: nothing can run precision 'fp32'" in done.stderr, done.stderr
    assert "exporting needs torch (not installed): pass an .onnx model" in done.stderr


def test_a_segmenter_on_onnx_runtime_never_imports_torch(repo_root):
    code = ("import sys, numpy as np; from refinenet_ros import Segmenter; "
            "seg = Segmenter(weights='default', device='cpu', backend='onnxruntime', precision='int8', "
            "temporal_filter=True); "
            "r = seg.segment([np.zeros((120, 160, 3), np.uint8)], with_confidence=True, overlay_alpha=0.5)[0]; "
            "assert r.labels.shape == (120, 160) and r.overlay.shape == (120, 160, 3); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=repo_root, env={**os.environ, "PYTHONPATH": str(repo_root)})
    assert done.returncode == 0, done.stderr
