"""The two paths a request's frames take through a network, behind one signature:
``run(request, memory) -> (results in frame order, ms per stage)``.

- :class:`TensorPath`: frames of equal size go through the whole-pipeline function of device
  tensors (:mod:`.frame_function`; on CUDA as a CUDA graph where one is kept,
  :mod:`.cuda_graphs`) and come back as uint8 (or uint16) arrays; multi-scale and mirror averaging
  of probabilities go step by step instead. Outputs of any size stay in bounded memory.
- :class:`InGraphPath`: a backend whose runtime runs a uint8 frame's whole pipeline in one graph
  (``spec.whole_frame``: OpenVINO, ONNX Runtime); only the palette lookup stays here. It takes
  single-scale requests whose outputs fit all of the model's class maps at once (any size where
  torch is not installed), and needs no torch.

torch is imported by the tensor path's methods only.
"""
import importlib.util
import time
import warnings

import numpy as np

from ..hardware.memory import MAX_SCORE_ELEMENTS
from .cuda_graphs import GraphCache
from .frame_function import FrameFunction, FrameShape
from .results import frame_result


def tensor_path(network, classes, scales=(1.0,), flip=False, cuda_graphs=True):
    """The :class:`TensorPath` of ``network`` with results in ``classes`` (imports torch)."""
    from .postprocess import Postprocessor
    from .preprocess import Preprocessor
    return TensorPath(network, Preprocessor(network.description.input, network.device),
                      Postprocessor(network.description, classes, network.device), scales, flip, cuda_graphs)


class TensorPath:
    def __init__(self, network, preprocessor, postprocessor, scales=(1.0,), flip=False, cuda_graphs=True):
        self.network, self.input, self.output = network, preprocessor, postprocessor
        self.scales, self.flip = tuple(scales), bool(flip)
        self.function = FrameFunction(network, preprocessor, postprocessor)
        self.graphs = None  # the function's CUDA graphs, where they can run
        if cuda_graphs and network.device.type == "cuda" and network.spec.cuda_graphs and \
                getattr(network, "compiled", None) is None:  # torch.compile makes graphs of its own
            self.graphs = GraphCache(self.function, preprocessor.upload, network.precision, network.model_classes,
                                     network.device, log=_warn)

    @property
    def graph_status(self):
        return "off" if self.graphs is None else f"on: {self.graphs.status()}"

    def run(self, request, memory=None):
        clock = StageClock(self.network.device)
        if self.scales != (1.0,) or self.flip:
            return self._averaged(request, memory, clock), clock.ms()
        groups = {}  # (frame, network, output) size -> frame indices: each group is one function call
        for i, frame in enumerate(request.frames):
            key = (frame.shape[:2], request.network_sizes[i], request.output_sizes[i])
            groups.setdefault(key, []).append(i)
        results = [None] * len(request.frames)
        for (frame_size, network_size, output_size), indices in groups.items():
            shape = FrameShape(len(indices), frame_size, network_size, output_size, request.with_confidence,
                               request.with_color)
            frames = np.stack([request.frames[i] for i in indices])
            for i, result in zip(indices, self.output.from_host(self._outputs(frames, shape, memory, clock))):
                results[i] = result
        return results, clock.ms()

    def _outputs(self, frames, shape, memory, clock):
        """{output: numpy} of one group: by its CUDA graph where one serves, else eagerly."""
        outputs = self.graphs.run(frames, shape, memory) if self.graphs is not None else None
        if outputs is not None:
            clock.mark("model")  # one graph replay: upload, model and outputs together
            return outputs
        import torch
        with torch.inference_mode():
            pixels = self.input.upload(frames)
            device_outputs = self.function(pixels, shape, memory, clock)
            outputs = {name: tensor.cpu().numpy() for name, tensor in device_outputs.items()}
        clock.mark("postprocess")
        return outputs

    def _averaged(self, request, memory, clock):
        """Results of probabilities averaged over scales and mirror images, step by step."""
        import torch
        results = [None] * len(request.frames)
        groups = {}  # network size -> frame indices: each group is one model batch
        for i, size in enumerate(request.network_sizes):
            groups.setdefault(size, []).append(i)
        with torch.inference_mode():
            for size, indices in groups.items():
                indices, batch = self.input.batch(request.frames, indices, size)
                clock.mark("preprocess")
                by_output = {}
                for row, i in enumerate(indices):
                    by_output.setdefault(request.output_sizes[i], []).append(row)
                tops = self._top_of_averages(batch, size, by_output, request.with_confidence, memory, clock)
                for out, rows in by_output.items():
                    for row, result in zip(rows, self.output.results(*tops[out], request.with_color)):
                        results[indices[row]] = result
                clock.mark("postprocess")
        return results

    def _top_of_averages(self, batch, size, by_output, with_confidence, memory, clock):
        """Per output size: (labels, confidence or None) of its rows of ``batch``."""
        from .upsample import upsample
        with_confidence = with_confidence and self.network.description.gives_confidence
        sums, passes = dict.fromkeys(by_output, 0), 0
        for scaled_size, scaled in self._scaled(batch, size):
            for mirrored in (False, True) if self.flip else (False,):
                scores = self.input.unpadded(self.network(scaled.flip(3) if mirrored else scaled, memory),
                                             scaled_size)
                clock.mark("model")
                if mirrored:
                    scores = scores.flip(3)
                for out in by_output:
                    scores_out = upsample(scores, out)
                    sums[out] = sums[out] + (scores_out if self.output.output == "probabilities"
                                             else scores_out.softmax(1))
                passes += 1
        return {out: self.output.top_of_probabilities(sums[out][rows] / passes, with_confidence)
                for out, rows in by_output.items()}

    def _scaled(self, batch, size):
        """(size, batch) at each of the scales, padded as the model's input needs."""
        from .upsample import upsample
        h, w = size
        for scale in self.scales:
            scaled_size = (max(1, round(h * scale)), max(1, round(w * scale)))
            yield scaled_size, (batch if scaled_size == (h, w) else
                                self.input.pad(upsample(batch[..., :h, :w], scaled_size), scaled_size))


class InGraphPath:
    def __init__(self, network, classes):
        self.network, self.classes = network, classes  # classes: a model.classes.OutputClasses

    def takes(self, request, scales=(1.0,), flip=False):
        """Whether the runtime's graph runs this request: single scale, and outputs small enough for
        all of the model's class maps at once (its graph upsamples them before any label map)."""
        if not self.network.spec.whole_frame or tuple(scales) != (1.0,) or flip:
            return False
        classes = self.network.model_classes
        # without torch the bounded path cannot run at all: better the graph's memory than no labels
        return (all(h * w * classes <= MAX_SCORE_ELEMENTS for h, w in request.output_sizes)
                or importlib.util.find_spec("torch") is None)

    def run(self, request, memory=None):
        clock, results = StageClock(None), []
        for frame, net, out in zip(request.frames, request.network_sizes, request.output_sizes):
            labels, confidence = self.network.segment_frame(frame, net, out, request.with_confidence,
                                                            self.classes.label_map, memory)
            clock.mark("model")
            results.append(frame_result(labels, confidence, self.classes.palette, request.with_color))
            clock.mark("postprocess")
        return results, clock.ms()


class StageClock:
    """ms per stage of one call, each :meth:`mark` closing the stage since the previous mark:
    wall time on a CPU; on CUDA, events on the device's stream, read once the call has synchronised,
    so kernels still running when the host moves on count in the stage that launched them."""

    STAGES = ("preprocess", "model", "postprocess")

    def __init__(self, device):
        self._cuda = device is not None and device.type == "cuda"
        self._marks = [(None, self._now())]

    def _now(self):
        if not self._cuda:
            return time.perf_counter()
        import torch
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def mark(self, stage):
        self._marks.append((stage, self._now()))

    def ms(self):
        times = dict.fromkeys(self.STAGES, 0.0)
        if self._cuda:
            self._marks[-1][1].synchronize()
        for (_, before), (stage, after) in zip(self._marks, self._marks[1:]):
            times[stage] += before.elapsed_time(after) if self._cuda else 1000 * (after - before)
        return times


def _warn(line):
    warnings.warn(line, RuntimeWarning, stacklevel=2)
