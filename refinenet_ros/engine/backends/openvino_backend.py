"""The OpenVINO backend: a described ONNX model compiled by OpenVINO for a CPU, an Intel GPU or
an NPU (this package's ``.pth`` models are exported to ONNX for it first).

Besides the network interface of :mod:`.base` it runs a frame's whole pipeline inside one
compiled graph (:meth:`OpenVinoNetwork.segment_frame`, built by :mod:`.openvino_graph`). Graphs
have static shapes, so one is compiled per (frame, network, output) size and a few are kept.

With ``streams`` > 1 on a CPU, that many calls run at once, each on its own infer request
(OpenVINO's THROUGHPUT mode, the cores split between streams): a caller with several frames in
flight gets more frames per second than one-at-a-time latency mode, and a busy core slows one
stream instead of every thread of one inference.
"""
import os
import threading
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np

from ..hardware.devices import Device
from ..hardware.memory import RELEASE, SPIKE, SPIKE_FACTOR
from ..model.description import check_graph
from .base import RANDOM_INIT, BackendSpec, Network, with_probed_classes
from .openvino_graph import frame_graph, separable_max_pools

# device name of the plan -> OpenVINO's
OPENVINO_DEVICES = {"cpu": "CPU", "intel_gpu": "GPU", "intel_npu": "NPU"}
# precision -> INFERENCE_PRECISION_HINT. The CPU plugin silently runs bf16 on AMX CPUs unless
# told f32; int8 graphs keep the plugin's choice for the layers the export left in float.
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": None}
MAX_COMPILED = 4  # graphs kept per network (one per size triple in use)


def available_devices():
    import openvino as ov
    return ov.Core().available_devices


class OpenVinoNetwork(Network):
    """``path`` (an ONNX export with float NCHW input and logits output) compiled by OpenVINO."""

    spec = BackendSpec("openvino", reads=(".pth", ".onnx", RANDOM_INIT),
                       runs={"cpu": ("fp32", "bf16", "int8"), "intel_gpu": ("fp32", "fp16", "int8"),
                             "intel_npu": ("fp16", "int8")},
                       requires=("openvino", "onnx"), overlaps=True, whole_frame=True)

    def __init__(self, path, device_type, precision, description, threads=None, streams=1):
        import openvino as ov
        if device_type not in OPENVINO_DEVICES:
            raise ValueError(f"OpenVINO runs on {', '.join(OPENVINO_DEVICES)}, not {device_type!r}")
        if precision not in PRECISION_HINTS:
            raise ValueError(f"OpenVINO runs {', '.join(PRECISION_HINTS)}, not precision {precision!r}")
        self._core = ov.Core()
        self.target = OPENVINO_DEVICES[device_type]
        if self.target not in self._core.available_devices:
            raise ValueError(f"OpenVINO lists no {self.target} device here (it has "
                             f"{', '.join(self._core.available_devices)})")
        self._model = self._core.read_model(os.fspath(path))
        separable_max_pools(self._model)
        self.device = Device("cpu")  # where the Segmenter's own arrays live
        graph_input, graph_output = self._model.inputs[0], self._model.outputs[0]
        dims = (_dims(graph_input.get_partial_shape()), graph_input.get_element_type().is_real(),
                _dims(graph_output.get_partial_shape()))
        self.description, self.fixed_input_size = check_graph(description, os.fspath(path), *dims)
        self.precision = precision
        self._threads = int(threads or len(os.sched_getaffinity(0)))
        self._graphs = OrderedDict()  # key -> _Graph, least recently used first
        self._lock = threading.Lock()
        self.streams = int(streams)
        self._config = self._compile_config(self.streams)
        self.description = with_probed_classes(self, os.fspath(path), dims, self.run)
        self.model_classes = self.description.num_classes

    @classmethod
    def load(cls, plan):
        if plan.weights is not None and plan.weights.lower().endswith(".onnx"):
            return cls(plan.weights, plan.device_type, plan.precision, plan.description, streams=plan.streams)
        from .export import exported_onnx
        with exported_onnx(plan) as (path, description):
            return cls(path, plan.device_type, plan.precision, description, streams=plan.streams)

    def _compile_config(self, streams):
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if streams > 1:
            config = {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams}
        if PRECISION_HINTS[self.precision]:
            config["INFERENCE_PRECISION_HINT"] = PRECISION_HINTS[self.precision]
        if self.target == "CPU":
            # the cores the process may use, without pinning them: the node's publishing thread
            # must still get a core
            config["INFERENCE_NUM_THREADS"] = self._threads
            config["ENABLE_CPU_PINNING"] = False
        return config

    def set_streams(self, streams):
        """Run ``streams`` calls at once from now on: graphs are compiled again for it (calls in
        progress finish on the graphs they have)."""
        streams = int(streams)
        with self._lock:
            if streams != self.streams:
                self.streams, self._config = streams, self._compile_config(streams)
                self._graphs.clear()

    def release_memory(self):
        """Idle after large inputs: every graph goes, the next frame compiles its own again
        (dropping only the large graphs left their memory held with the small ones)."""
        with self._lock:
            self._graphs.clear()

    # -- the network interface ----------------------------------------------------------
    def run(self, x, memory=None):
        """The model's output of a normalised float32 NCHW numpy batch, one frame per inference
        (batches only cost on a CPU)."""
        shape = (1, *x.shape[1:])
        build = lambda: self._scores_graph(shape)  # noqa: E731
        with self._request(("scores", shape), int(np.prod(shape)), build, memory) as request:
            return np.concatenate([np.array(request.infer({0: np.ascontiguousarray(x[i:i + 1])},
                                                           share_inputs=True)[0], copy=True)
                                   for i in range(len(x))])

    def __call__(self, x, memory=None):
        import torch
        out = torch.from_numpy(self.run(x.detach().float().contiguous(memory_format=torch.contiguous_format)
                                        .numpy(), memory))
        if self.description.output == "labels":
            return out.reshape(out.shape[0], *out.shape[-2:]).long()
        return out.float()

    # -- the whole pipeline in one graph --------------------------------------------------
    def segment_frame(self, frame, network_size, output_size, with_confidence=False, label_map=None,
                      memory=None):
        """(labels H x W uint8/uint16, confidence H x W float32 or None) of one H x W x 3 uint8
        RGB frame run at ``network_size`` with outputs at ``output_size``; a labels model gives
        no confidence. ``label_map``: labels and confidence in its classes."""
        with_confidence = bool(with_confidence) and self.description.gives_confidence
        key = ("frame", frame.shape[:2], tuple(network_size), tuple(output_size), with_confidence,
               None if label_map is None else label_map.key)
        build = lambda: frame_graph(self._model.clone(), self.description, frame.shape[:2],  # noqa: E731
                                    network_size, output_size, with_confidence, label_map)
        with self._request(key, frame.size, build, memory) as request:
            outputs = request.infer({0: frame[None]}, share_inputs=True)
            labels = np.array(outputs[0][0], copy=True)
            return labels, (np.array(outputs[1][0], copy=True) if with_confidence else None)

    @contextmanager
    def _request(self, key, size, build, memory):
        """An idle infer request of ``key``'s graph, this call's alone until it returns. A graph
        for a ``memory`` SPIKE is not kept, so its memory goes when the call returns; at a
        RELEASE, graphs kept for much larger inputs go too."""
        with self._lock:  # compiling under the lock: a second caller of a new size waits for it
            if memory == RELEASE:
                for old in [k for k, g in self._graphs.items() if g.size > SPIKE_FACTOR * size]:
                    del self._graphs[old]
            graph = self._graphs.get(key)
            if graph is not None:
                self._graphs.move_to_end(key)
            else:
                graph = _Graph(self._core.compile_model(build(), self.target, self._config), size)
                if memory != SPIKE:
                    self._graphs[key] = graph
                    while len(self._graphs) > MAX_COMPILED:
                        self._graphs.popitem(last=False)
            request = graph.idle.pop() if graph.idle else graph.compiled.create_infer_request()
        try:
            yield request
        finally:
            with self._lock:
                graph.idle.append(request)

    def _scores_graph(self, shape):
        model = self._model.clone()
        for extra in model.get_results()[1:]:  # auxiliary heads: not computed
            model.remove_result(extra)
        model.reshape({model.inputs[0]: list(shape)})
        return model

    def compiled_graphs(self):
        """The keys of the graphs kept, least recently used first."""
        with self._lock:
            return list(self._graphs)

    def __repr__(self):
        return (f"OpenVinoNetwork({self.target}, {self.precision}, {self.model_classes} classes, "
                f"{self.streams} stream(s), {len(self._graphs)} compiled graphs)")


class _Graph:
    """A compiled graph and its infer requests not in use (one per concurrent caller)."""

    __slots__ = ("compiled", "idle", "size")

    def __init__(self, compiled, size):
        self.compiled, self.idle, self.size = compiled, [], size  # size: its input's elements


def _dims(shape):
    if shape.rank.is_dynamic:
        return [None] * 4
    return [d.get_length() if d.is_static else None for d in shape]
