"""The whole pipeline as one function of device tensors (engine/processing/frame_function.py) and
its CUDA graphs (engine/processing/cuda_graphs.py). On a CPU: the function against the
step-by-step path, for every output combination, a label map and padding; the graph cache's
padding, bounds, eviction, self-check refusal and fallback with the capture step replaced by
stand-ins (one that records captures and runs the function, one that fails, one that returns wrong
labels). On CUDA: real captures against the eager path."""
import numpy as np
import pytest
import torch

from refinenet_ros import Segmenter
from refinenet_ros.engine.frames import synthetic_frame
from refinenet_ros.engine.hardware.memory import SPIKE
from refinenet_ros.engine.processing.cuda_graphs import GraphCache, padded_batch
from refinenet_ros.engine.processing.frame_function import FrameShape

NAV2 = "config/label_maps/camvid_nav2.yaml"


@pytest.fixture(scope="module")
def frames():
    return [synthetic_frame(72, 96, seed=1), synthetic_frame(72, 96, seed=2), synthetic_frame(50, 64, seed=3)]


def step_by_step(seg, frames, size, output_resolution, with_confidence, with_color):
    """The engine's step-by-step path: one batch of every frame at ``size``, the network once, the
    top class per output size."""
    path = seg._tensor_path
    with torch.inference_mode():
        indices, batch = path.input.batch(frames, list(range(len(frames))), size)
        scores = path.input.unpadded(path.network(batch), size)
        results = [None] * len(frames)
        for row, i in enumerate(indices):
            out = frames[i].shape[:2] if output_resolution == "input" else size
            labels, confidence = path.output.top_classes(scores[row:row + 1], out, with_confidence)
            results[i] = path.output.results(labels, confidence, with_color)[0]
    return results


@pytest.mark.parametrize("label_map", [None, NAV2])
@pytest.mark.parametrize("with_confidence, with_color", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("output_resolution", ["input", "network"])
def test_the_function_gives_the_step_by_step_labels_in_fp32(repo_root, frames, label_map, with_confidence,
                                                              with_color, output_resolution, tmp_path):
    padding = tmp_path / "pad.yaml"
    padding.write_text("input: {size_multiple: 32}\n")
    seg = Segmenter(weights="default", device="cpu", precision="fp32", backend="torch", model_info=str(padding),
                    label_map=label_map and str(repo_root / label_map))
    size = (80, 100)  # every frame resized (up and down) and padded to 96 x 128
    ours = seg.segment(frames, input_size=size, output_resolution=output_resolution,
                       with_confidence=with_confidence, with_color=with_color)
    theirs = step_by_step(seg, frames, size, output_resolution, with_confidence, with_color)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a.labels, b.labels)
        assert a.labels.dtype == b.labels.dtype == np.uint8
        for field in ("confidence", "color"):
            if getattr(b, field) is None:
                assert getattr(a, field) is None
            else:
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


class Stand_in:
    """A capture step for CPUs: records what it captures; its 'graph' runs the function on a
    padded batch, or fails, or spoils a share of the labels."""

    def __init__(self, fail=None, spoil=0.0):
        self.captures, self.fail, self.spoil = [], fail, spoil

    def __call__(self, function, shape, device):
        if self.fail == "capture":
            raise RuntimeError("operation not permitted when stream is capturing")
        self.captures.append(shape)
        return _Replay(function, shape, self)


class _Replay:
    def __init__(self, function, shape, stand_in):
        self.function, self.shape, self.stand_in = function, shape, stand_in

    def replay(self, frames):
        if self.stand_in.fail == "replay":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        padded = np.zeros((self.shape.batch, *frames.shape[1:]), np.uint8)
        padded[:len(frames)] = frames
        with torch.inference_mode():
            outputs = {k: v.numpy().copy() for k, v in self.function(torch.from_numpy(padded), self.shape).items()}
        spoiled = outputs["labels"].reshape(-1)[:int(self.stand_in.spoil * outputs["labels"].size)]
        spoiled += 1
        return outputs


def graphed(seg, capture, max_graphs=8, precision=None):
    logged = []
    path = seg._tensor_path
    path.graphs = GraphCache(path.function, path.input.upload, precision or seg.precision,
                             seg.network.model_classes, seg.device, capture=capture, max_graphs=max_graphs,
                             log=logged.append)
    return path.graphs, logged


@pytest.fixture()
def seg():
    torch.manual_seed(0)
    return Segmenter(weights=None, num_classes=5, device="cpu", precision="fp32", backend="torch")


def test_batches_are_padded_to_a_few_captured_sizes_and_match_the_eager_path(seg, frames):
    assert [padded_batch(n) for n in (1, 2, 3, 4, 5, 8, 9)] == [1, 2, 4, 4, 8, 8, 16]
    eager = [seg.segment([f], with_confidence=True) [0] for f in frames[:2]]
    cache, logged = graphed(seg, capture := Stand_in())
    batch = [frames[0], frames[1], frames[0]]  # three frames: the graph of four serves them
    for _ in range(3):
        results = seg.segment(batch, with_confidence=True)
        for got, want in zip(results, eager + eager[:1]):
            np.testing.assert_array_equal(got.labels, want.labels)
            np.testing.assert_array_equal(got.confidence, want.confidence)
    seg.segment(batch + [frames[1]], with_confidence=True)  # four: the same graph
    assert [s.batch for s in capture.captures] == [4] and logged == []
    assert "1 graph(s), 1 checked" in seg.graph_status


def test_the_cache_is_bounded_least_recently_used_out(seg, frames):
    cache, _ = graphed(seg, capture := Stand_in(), max_graphs=2)
    for size in ((32, 48), (40, 48), (32, 48), (48, 64), (40, 48)):
        seg.segment([frames[0]], input_size=size)
    # (40, 48) was the least recently used when (48, 64) came, so it was captured again
    assert [s.network_size for s in capture.captures] == [(32, 48), (40, 48), (48, 64), (40, 48)]
    assert len(cache._graphs) == 2


def test_a_spike_or_an_outsized_shape_runs_eagerly_and_is_not_captured(seg, frames, monkeypatch):
    cache, _ = graphed(seg, capture := Stand_in())
    shape = FrameShape(1, (72, 96), (72, 96), (72, 96), False, False)
    assert cache.run(np.stack(frames[:1]), shape, memory=SPIKE) is None
    from refinenet_ros.engine.processing import frame_function
    monkeypatch.setattr(frame_function, "MAX_SCORE_ELEMENTS", 72 * 96 * 4)  # 5 classes no longer fit
    assert cache.run(np.stack(frames[:1]), shape) is None and capture.captures == []


@pytest.mark.parametrize("fail", ["capture", "replay"])
def test_a_failing_capture_or_replay_is_refused_once_and_the_eager_path_runs(seg, frames, fail):
    want = seg.segment([frames[0]])[0].labels
    _, logged = graphed(seg, Stand_in(fail=fail))
    for _ in range(3):
        np.testing.assert_array_equal(seg.segment([frames[0]])[0].labels, want)
    assert len(logged) == 1 and f"{fail} failed" in logged[0] and "running it eagerly" in logged[0]
    assert "refused" in seg.graph_status


@pytest.mark.parametrize("precision, spoil, kept", [("fp32", 0.0005, False), ("fp16", 0.0005, True),
                                                     ("fp16", 0.01, False)])
def test_the_first_replay_is_checked_against_the_eager_path(seg, frames, precision, spoil, kept):
    """fp32 graphs must give identical labels, fp16 ones agree on 99.9% of pixels; a graph that
    disagrees is refused and the eager path's labels come back."""
    want = seg.segment([frames[0]])[0].labels
    cache, logged = graphed(seg, Stand_in(spoil=spoil), precision=precision)
    got = seg.segment([frames[0]])[0].labels
    if kept:
        assert logged == [] and (got == want).mean() >= 0.999
    else:
        np.testing.assert_array_equal(got, want)
        assert len(logged) == 1 and "agree with the eager path's" in logged[0]
        assert cache.refused and cache._graphs == {}


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_real_cuda_graphs_match_the_eager_path(frames, precision):
    graphs = Segmenter(weights="default", device="cuda", precision=precision, backend="torch")
    eager = Segmenter(weights="default", device="cuda", precision=precision, backend="torch", cuda_graphs=False)
    for batch in ([frames[0]], frames[:2], [frames[0], frames[1], frames[0]]):
        for _ in range(2):
            got, want = graphs.segment(batch, with_confidence=True), eager.segment(batch, with_confidence=True)
            for a, b in zip(got, want):
                assert (a.labels == b.labels).mean() >= (1.0 if precision == "fp32" else 0.999)
    assert graphs.graph_status.startswith("on: 3 graph(s), 3 checked") and "refused" not in graphs.graph_status
