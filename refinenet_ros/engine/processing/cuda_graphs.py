"""CUDA graphs of the frame function (:mod:`.frame_function`), one per :class:`FrameShape`, made
safe where they have never run.

A graph is captured on a shape's first use, after a warm-up on a side stream, with static pinned
staging and output buffers: per call one copy in, one replay, one copy out per output, one
synchronisation. Its first replay is checked against the eager function on the same frames
(labels identical in fp32, agreeing on at least :data:`MIN_AGREEMENT` of the pixels in fp16 and
bf16); a capture or replay that fails or disagrees is refused for that shape, the reason logged
once, and the eager function runs instead. At most ``max_graphs`` are kept (least recently used
out); a memory spike's shape and shapes too large for all class maps at once are never captured;
batches are padded up to a power of two, so that a few graphs serve every batch size.

The capture step is an argument, so that all of this logic runs, and is tested, on a CPU.
"""
import threading
from collections import OrderedDict

import numpy as np

from ..hardware.memory import SPIKE

MIN_AGREEMENT = {"fp32": 1.0, "fp16": 0.999, "bf16": 0.999}  # labels as the eager function's


def padded_batch(count):
    """The captured batch size that serves ``count`` frames: the next power of two."""
    return 1 << max(0, int(count) - 1).bit_length()


def capture_cuda_graph(function, shape, device):
    """The real capture: ``function`` at ``shape`` as a CUDA graph with static pinned buffers."""
    import torch
    staging = torch.empty((shape.batch, *shape.frame_size, 3), dtype=torch.uint8).pin_memory()
    pixels = torch.zeros(staging.shape, dtype=torch.uint8, device=device)
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.no_grad(), torch.cuda.stream(side):
        for _ in range(3):  # outside the graph: cuDNN chooses its kernels, caches fill
            function(pixels, shape)
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        outputs = function(pixels, shape)
    host = {name: torch.empty(t.shape, dtype=t.dtype).pin_memory() for name, t in outputs.items()}
    return _CudaGraph(graph, staging, pixels, outputs, host)


class _CudaGraph:
    def __init__(self, graph, staging, pixels, outputs, host):
        self.graph, self.staging, self.pixels, self.outputs, self.host = graph, staging, pixels, outputs, host

    def replay(self, frames):
        """{output: numpy view of its pinned buffer} for ``frames`` (valid until the next replay)."""
        import torch
        self.staging.numpy()[:len(frames)] = frames
        self.pixels.copy_(self.staging, non_blocking=True)
        self.graph.replay()
        for name, tensor in self.outputs.items():
            self.host[name].copy_(tensor, non_blocking=True)
        torch.cuda.current_stream(self.pixels.device).synchronize()
        return {name: tensor.numpy() for name, tensor in self.host.items()}


class GraphCache:
    """Graphs of ``function`` (a :class:`.frame_function.FrameFunction`) for a network of
    ``model_classes`` classes in ``precision``; ``upload`` puts numpy frames on the device for the
    eager check; ``log`` gets each refusal once."""

    def __init__(self, function, upload, precision, model_classes, device, capture=capture_cuda_graph,
                 max_graphs=8, log=print):
        self.function, self.upload, self.device, self._capture, self._log = function, upload, device, capture, log
        self.min_agreement = MIN_AGREEMENT.get(precision, 1.0)
        self.model_classes, self.max_graphs = model_classes, max_graphs
        self.refused = {}                  # shape -> reason
        self._graphs = OrderedDict()       # shape -> captured graph, least recently used first
        self._checked = set()
        self._lock = threading.Lock()

    def run(self, frames, shape, memory=None):
        """{output: numpy} for ``frames`` (N x H x W x 3 uint8) by a graph of ``shape`` padded to
        its batch, or None where the eager function must run (refused, too large, a spike)."""
        padded = shape.with_batch(padded_batch(shape.batch))
        if memory == SPIKE or padded in self.refused or not padded.fits(self.model_classes):
            return None
        with self._lock:
            graph = self._graph(padded)
            if graph is None:
                return None
            try:
                outputs = {name: np.array(array[:shape.batch]) for name, array in graph.replay(frames).items()}
            except Exception as exc:  # noqa: BLE001 - a replay that fails is refused, the eager path runs
                return self._refuse(padded, f"replay failed: {type(exc).__name__}: {exc}")
            if padded not in self._checked:
                problem = self._disagreement(frames, shape, outputs)
                if problem:
                    return self._refuse(padded, problem)
                self._checked.add(padded)
            return outputs

    def status(self):
        """For /diagnostics: graphs kept and checked, and what was refused and why."""
        with self._lock:
            text = f"{len(self._graphs)} graph(s), {len(self._checked)} checked against the eager path"
            refusals = "; ".join(f"{_describe(shape)}: {why}" for shape, why in self.refused.items())
            return text + (f"; refused {refusals}" if refusals else "")

    def _graph(self, shape):
        graph = self._graphs.get(shape)
        if graph is not None:
            self._graphs.move_to_end(shape)
            return graph
        try:
            graph = self._capture(self.function, shape, self.device)
        except Exception as exc:  # noqa: BLE001 - a capture that fails is refused, the eager path runs
            return self._refuse(shape, f"capture failed: {type(exc).__name__}: {exc}")
        self._graphs[shape] = graph
        while len(self._graphs) > self.max_graphs:
            evicted, _ = self._graphs.popitem(last=False)
            self._checked.discard(evicted)
        return graph

    def _disagreement(self, frames, shape, outputs):
        """Why the graph's first outputs are not the eager function's, or None."""
        import torch
        with torch.inference_mode():
            eager = {name: t.cpu().numpy() for name, t in self.function(self.upload(frames), shape).items()}
        if set(eager) != set(outputs) or eager["labels"].shape != outputs["labels"].shape:
            return f"outputs {sorted(outputs)} differ from the eager path's {sorted(eager)}"
        agreement = float(np.mean(eager["labels"] == outputs["labels"]))
        if agreement < self.min_agreement:
            return (f"its labels agree with the eager path's on {100 * agreement:.3f}% of pixels "
                    f"(needs {100 * self.min_agreement:.1f}%)")
        return None

    def _refuse(self, shape, reason):
        self._graphs.pop(shape, None)
        self._checked.discard(shape)
        if shape not in self.refused:
            self.refused[shape] = reason[:300]
            self._log(f"CUDA graph for {_describe(shape)} refused, running it eagerly: {reason[:300]}")
        return None


def _describe(shape):
    outputs = "labels" + (", confidence" if shape.with_confidence else "") + (", colour" if shape.with_color else "")
    return (f"{shape.batch} x {shape.frame_size[1]}x{shape.frame_size[0]} at {shape.network_size[1]}x"
            f"{shape.network_size[0]} -> {shape.output_size[1]}x{shape.output_size[0]} ({outputs})")
