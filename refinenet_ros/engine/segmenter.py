"""The batched segmentation engine: RGB frames in, label / colour / overlay / confidence out.

No ROS here: the node, the demo, the evaluation and the benchmark all share this class. It loads a
network by its plan (:mod:`.planning`), names the classes its results are in (:mod:`.model.classes`)
and sends each request down one of two paths (:mod:`.processing.paths`): the tensor path (upload
uint8 frames, preprocess on the device, the network in batches, postprocess on the device) or,
where the backend runs whole frames (OpenVINO), the in-graph path. Only uint8 (or uint16) results
come back.
"""
import gc
import threading
import time

import numpy as np

from .hardware.memory import MemoryGuard, trim_heap
from .model.classes import OutputClasses
from .planning.loading import load_alternative, load_network
from .planning.streams import check_streams
from .processing.paths import InGraphPath, tensor_path
from .processing.results import SegmentationResult, with_overlay
from .processing.temporal import TemporalFilter
from .processing.requests import check_averaging, check_scales, check_size, frame_request, network_size

__all__ = ["SegmentationResult", "Segmenter"]


class Segmenter:
    """Light-Weight RefineNet (or a described model's) inference on batches of H x W x 3 uint8 RGB
    frames. Every argument, with what it does: docs/engine.md; ``weights="default"`` is the shipped
    model, None a random one (tests, benchmarks).
    """

    def __init__(self, arch="mbv2", weights="default", num_classes=None, device="auto",
                 precision="auto", input_size=None, palette=None, class_names=None,
                 scales=(1.0,), flip=False, compile=False, backend="auto", streams=1,
                 model_info=None, label_map=None, cuda_graphs=True, temporal_filter=False):
        self.scales, self.flip, self._cuda_graphs = check_scales(scales), bool(flip), cuda_graphs
        network, plan = load_network(
            arch=arch, weights=weights, num_classes=num_classes, device=device, precision=precision,
            backend=backend, compile=compile, input_size=check_size(input_size, "input_size"),
            streams=check_streams(streams), model_info=model_info)
        check_averaging(self.scales, self.flip, network.description)
        self.input_size = network_size(input_size, network.fixed_input_size)
        self.classes = OutputClasses.of(network.description, network.model_classes, label_map, class_names,
                                        palette)
        self._use(network, plan)
        self._memory, self.temporal_filter = MemoryGuard(), temporal_filter
        self._local = threading.local()  # per calling thread: the timings of its last call
        if compile and self.input_size is not None:  # compile now rather than on the first frame
            self.segment([np.zeros((*self.input_size, 3), np.uint8)])

    arch = property(lambda self: self.network.arch)
    device = property(lambda self: self.network.device)
    precision = property(lambda self: self.network.precision)
    backend = property(lambda self: self.network.backend)
    output_stride = property(lambda self: self.network.output_stride)
    fixed_input_size = property(lambda self: self.network.fixed_input_size, doc="(h, w) of a static model")
    streams = property(lambda self: self.network.streams, doc="segment() calls that may run at once")
    overlaps = property(lambda self: self.network.spec.overlaps, doc="whether calls can run at once")
    model_name = property(lambda self: self.description.name)
    gives_confidence = property(lambda self: self.description.gives_confidence, doc="False: labels only")
    num_classes = property(lambda self: self.classes.count, doc="output classes (a label map's, if any)")
    class_names = property(lambda self: list(self.classes.names))
    palette = property(lambda self: self.classes.palette)
    label_map = property(lambda self: self.classes.label_map)
    last_timings = property(lambda self: getattr(self._local, "timings", {}), doc="ms per stage, this thread")
    graph_status = property(lambda self: self._tensor.graph_status if self._tensor else "off",
                            doc="whether the whole pipeline runs as CUDA graphs, and how that went")

    def _use(self, network, plan):
        """Run ``network`` (by ``plan``) from now on; calls under way finish on the old one. Where it
        runs whole frames, the tensor path (and torch) comes only when a request needs it."""
        self.description, self._tensor = network.description, None
        self._graph_path = InGraphPath(network, self.classes)
        self.network, self.plan = network, plan
        if not network.spec.whole_frame:
            self._tensor_path  # noqa: B018 - built now: every request takes it

    @property
    def _tensor_path(self):
        if self._tensor is None:
            self._tensor = tensor_path(self.network, self.classes, self.scales, self.flip, self._cuda_graphs)
        return self._tensor

    def fall_back(self, failure):
        """Switch to the next of the plan's alternatives that loads, the network having failed
        (``failure``); returns the line that says what runs now and why."""
        network, plan = load_alternative(self.plan, failure)
        if network is None:
            return f"{self.backend}/{self.precision} failed ({failure}) and nothing else can run: {plan}"
        self._use(network, plan)
        return f"now running {plan.reason}"

    def release_memory(self):
        """Give back what large frames left, the caller idle (cheap when there is nothing to give)."""
        if self._memory.idle_release_due():
            self.network.release_memory()
            gc.collect()  # reference cycles can hold a large frame's arrays
            trim_heap()

    def set_streams(self, streams):
        """Run ``streams`` segment() calls at once from now on; the old count's graphs give back their pages."""
        if check_streams(streams) != self.streams:
            self.network.set_streams(streams)
            trim_heap()

    temporal_filter = property(lambda self: self._temporal is not None,
                               lambda self, on: setattr(self, "_temporal", TemporalFilter() if on else None),
                               doc="whether segment(..., cameras=...) filters each camera's labels over time")

    def segment(self, images, output_resolution="input", with_confidence=False, input_size=None,
                overlay_alpha=None, max_pixels=None, with_color=True, cameras=None, times=None):
        """Segment a sequence of H x W x 3 uint8 RGB arrays; returns a list of
        :class:`SegmentationResult`, in order. ``output_resolution``: ``"input"`` (each
        frame's own size) or ``"network"`` (the network input size). ``input_size`` overrides
        the constructor's for this call; ``overlay_alpha`` (0..1) also blends an overlay;
        ``max_pixels`` downscales frames run at their native size to at most that many pixels;
        ``with_color=False`` leaves the colours out (None) unless the overlay needs them;
        ``cameras`` (and ``times``, s) name each frame's camera for the temporal filter."""
        size = self.input_size if input_size is None else network_size(input_size, self.fixed_input_size)
        temporal = self._temporal if cameras is not None else None
        with_color = with_color or overlay_alpha is not None
        request = frame_request(images, size, output_resolution, max_pixels, with_confidence or temporal,
                                with_color and not temporal)
        memory = self._memory.observe(request.pixels)
        path = self._graph_path if self._graph_path.takes(request, self.scales, self.flip) else self._tensor_path
        results, timings = path.run(request, memory)
        finishing = time.perf_counter()
        if temporal is not None:
            times = [time.monotonic()] * len(results) if times is None else times
            results = temporal.results(results, request.frames, cameras, times, with_confidence, with_color,
                                       self.palette)
            timings["temporal"] = 1000 * (time.perf_counter() - finishing)
        if overlay_alpha is not None:
            results = [with_overlay(frame, result, overlay_alpha) for frame, result in zip(request.frames, results)]
        if memory:  # a spike, or back to ordinary frames: give the big temporaries' pages back
            trim_heap()
        timings["postprocess"] += 1000 * (time.perf_counter() - finishing)
        self._local.timings = timings
        return results

    def __repr__(self):
        return (f"Segmenter({self.arch!r}, backend={self.backend!r}, classes={self.num_classes}, device="
                f"{str(self.device)!r}, precision={self.precision!r}, input_size={self.input_size})")
