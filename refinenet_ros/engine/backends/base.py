"""The one contract every network keeps (:class:`Network`), its backend's declaration
(:class:`BackendSpec`: what it reads, where it runs, what it can do), and what backends share: a
CPU's frame-by-frame call, a probed class count. This package's models as ONNX: :mod:`.export`.

Each backend is one module of this package: a :class:`Network` subclass with its ``spec`` and its
``load(plan)`` (the :class:`..planning.plan.Plan` is a loader's one input).
"""
import abc
import importlib.util
from dataclasses import dataclass


RANDOM_INIT = None  # a weights "file" of None: a randomly initialised model, for tests


@dataclass(frozen=True)
class BackendSpec:
    """A backend's declaration; the plan decides from these alone, and a network's capabilities
    are read from here only."""
    name: str
    reads: tuple             # weight file kinds: ".pth", ".onnx", RANDOM_INIT
    runs: dict               # device type -> precisions it runs there
    requires: tuple          # modules that must be importable
    compiles: bool = False   # runs torch.compile
    overlaps: bool = False   # runs several calls at once on a CPU (frames in flight: set_streams)
    whole_frame: bool = False  # runs a uint8 frame's whole pipeline in its runtime (segment_frame)
    cuda_graphs: bool = False  # its calls on CUDA can be captured in a CUDA graph (torch tensors throughout)

    def installed(self):
        return all(importlib.util.find_spec(name) is not None for name in self.requires)

    def refusal(self, device_type, precision, kind, compile=False):
        """Why this backend cannot run the request, or None when it can."""
        if precision not in self.runs.get(device_type, ()):
            places = "; ".join(f"{d}: {', '.join(p)}" for d, p in self.runs.items())
            return f"the {self.name} backend does not run {precision} on {device_type} (it runs {places})"
        if kind not in self.reads:
            what = "random initialisation" if kind is RANDOM_INIT else f"{kind} files"
            return f"the {self.name} backend does not read {what}"
        if compile and not self.compiles:
            return f"compile=True needs the torch backend, not {self.name}"
        if not self.installed():
            missing = [n for n in self.requires if importlib.util.find_spec(n) is None]
            return f"the {self.name} backend is not installed (missing: {', '.join(missing)})"
        if kind != ".onnx" and importlib.util.find_spec("torch") is None:
            what = "a random model" if kind is RANDOM_INIT else f"{kind} files"
            return (f"the {self.name} backend runs {what} as an ONNX export, and exporting needs torch "
                    f"(not installed): pass an .onnx model (refinenet-export writes one)")
        return None


class Network(abc.ABC):
    """A loaded model on one device, in one precision.

    Called with the description's normalised float NCHW batch on ``device`` (as
    :mod:`..processing.preprocess` makes it), it returns, by ``description.output``, fp32 logits
    or probabilities (N x C x h x w, any stride) or labels (N x h x w, int64). ``memory`` is what
    the Segmenter's one memory guard says of the call (:mod:`..hardware.memory`: SPIKE, keep
    nothing made for it; RELEASE, give back what larger calls left; None).

    ``model_classes`` is the number of classes the model outputs (a label map's output classes
    are the Segmenter's business). What a backend can do beyond this is in its ``spec``.
    """

    spec: BackendSpec
    description = device = precision = model_classes = None
    fixed_input_size = None  # (h, w) that a static model requires, else None
    streams = 1              # calls that may run at once

    backend = property(lambda self: self.spec.name)
    arch = property(lambda self: self.description.arch)
    output_stride = property(lambda self: self.description.output_stride)

    @classmethod
    @abc.abstractmethod
    def load(cls, plan):
        """The network that ``plan`` (a :class:`..planning.plan.Plan`) decided on."""

    @abc.abstractmethod
    def __call__(self, x, memory=None):
        """Scores (or labels) of the normalised batch ``x``."""

    def segment_frame(self, frame, network_size, output_size, with_confidence, label_map, memory=None):
        """(labels, confidence or None) of one H x W x 3 uint8 RGB frame, the whole pipeline in
        the runtime: only where ``spec.whole_frame``."""
        raise NotImplementedError(f"the {self.backend} backend does not run whole frames")

    def set_streams(self, streams):
        """Run ``streams`` calls at once from now on: only where ``spec.overlaps``."""
        if streams != self.streams:
            raise ValueError(f"the {self.backend} backend runs one call at a time, not {streams}")

    def release_memory(self):
        """Idle after large inputs: give back what they left (the Segmenter decides when)."""


def one_frame_at_a_time_on_cpu(model, x, device):
    """``model(x)``; on CPUs frame by frame, which is faster than a batched call there (a batch's
    activations no longer fit the caches; docs/engine.md). CUDA gets the whole batch at once."""
    if device.type != "cpu" or x.shape[0] == 1:
        return model(x)
    import torch
    return torch.cat([model(x[i:i + 1]) for i in range(x.shape[0])])


def with_probed_classes(network, path, graph_dims, run):
    """Graphs exported from other frameworks often leave the class dimension symbolic: then one
    small frame, run by ``run`` (numpy NCHW float32 in, numpy out), finds it, and the description is
    checked against it (``graph_dims``: the arguments of :func:`..model.description.check_graph`
    after the description and path)."""
    import numpy as np

    from ..model.description import check_graph
    input_dims, is_float, output_dims = graph_dims
    if network.description.output == "labels" or output_dims[1] is not None or len(output_dims) != 4:
        return network.description
    size = network.fixed_input_size or network.description.input.padded((64, 64))
    channels = run(np.zeros((1, 3, *size), np.float32)).shape[1]
    return check_graph(network.description, path, input_dims, is_float,
                       [output_dims[0], channels, *output_dims[2:]])[0]
