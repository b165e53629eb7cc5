"""The OpenVINO backend: an ONNX export compiled by OpenVINO for a CPU, an Intel GPU or an NPU.

Besides the network interface of :mod:`.backends` (normalised float NCHW in, logits out) it runs
a frame's whole pipeline inside one compiled graph (:meth:`OpenVinoNetwork.segment_frame`):
uint8 HWC in, resize and normalisation, the network, bilinear upsampling of the logits to the
output size, the top class (ties to the lowest index, as ``max(1)``) and, when asked, its
softmax probability; uint8/uint16 labels out. Graphs have static shapes, so one is compiled per
(frame, network, output) size and a few are kept.

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

from ..models import IMAGENET_MEAN, IMAGENET_STD
from .checks import check_streams
from .memory import SpikeDetector

# device name of the plan -> OpenVINO's
OPENVINO_DEVICES = {"cpu": "CPU", "intel_gpu": "GPU", "intel_npu": "NPU"}
# precision -> INFERENCE_PRECISION_HINT. The CPU plugin silently runs bf16 on AMX CPUs unless
# told f32; int8 graphs keep the plugin's choice for the layers the export left in float.
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": None}
MAX_COMPILED = 4  # graphs kept per network (one per size triple in use)
AUTO_STREAMS = 2  # streams of "auto" on a CPU of at least that many cores
# Two frames in flight double each frame's latency: "auto" keeps them only where a measurement
# finds them buying at least this much more frames/s than one stream.
MIN_STREAMS_GAIN = 1.05


def resolve_streams(streams, device_type, cores=None, gain=None):
    """The number of concurrent calls for ``streams`` (an int >= 1, or "auto": two on a CPU of
    two or more cores, unless ``gain``, the measured frames/s of two streams over one, is below
    MIN_STREAMS_GAIN; else one)."""
    streams = check_streams(streams)
    if streams == "auto":
        cores = len(os.sched_getaffinity(0)) if cores is None else cores
        worth_it = gain is None or gain >= MIN_STREAMS_GAIN
        return AUTO_STREAMS if device_type == "cpu" and cores >= AUTO_STREAMS and worth_it else 1
    return streams


def available_devices():
    import openvino as ov
    return ov.Core().available_devices


class OpenVinoNetwork:
    """``path`` (an ONNX export with float NCHW input and logits output) compiled by OpenVINO."""

    backend = "openvino"

    def __init__(self, path, device_type, precision, num_classes, output_stride, threads=None,
                 streams=1):
        import openvino as ov
        import torch
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
        self.device = torch.device("cpu")  # where the Segmenter's own tensors live
        if num_classes is None:  # an export without metadata: its logits' channels
            channels = self._model.outputs[0].get_partial_shape()[1]
            if not channels.is_static:
                raise ValueError(f"{path}: cannot tell the number of classes (no num_classes metadata; "
                                 f"export it with refinenet-export)")
            num_classes = channels.get_length()
        self.precision, self.num_classes, self.output_stride = precision, int(num_classes), output_stride
        self.fixed_input_size = _static_size(self._model.inputs[0].get_partial_shape())
        self.streams = resolve_streams(streams, device_type)
        self._config = {"PERFORMANCE_HINT": "LATENCY"}
        if self.streams > 1:
            self._config = {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": self.streams}
        if PRECISION_HINTS[precision]:
            self._config["INFERENCE_PRECISION_HINT"] = PRECISION_HINTS[precision]
        if self.target == "CPU":
            # the cores the process may use, without pinning them: the node's publishing thread
            # must still get a core
            self._config["INFERENCE_NUM_THREADS"] = int(threads or len(os.sched_getaffinity(0)))
            self._config["ENABLE_CPU_PINNING"] = False
        self._graphs = OrderedDict()  # key -> _Graph, least recently used first
        self._lock = threading.Lock()
        self._spikes = SpikeDetector()

    # -- the network interface ----------------------------------------------------------
    def __call__(self, x):
        import torch
        frames = x.detach().float().contiguous(memory_format=torch.contiguous_format).split(1)
        shape = tuple(frames[0].shape)  # one frame per call: batches only cost on a CPU
        with self._request(("logits", shape), frames[0].numel(), lambda: self._logits_graph(shape)) as request:
            logits = [np.array(request.infer({0: f.numpy()}, share_inputs=True)[0], copy=True)
                      for f in frames]
        return torch.from_numpy(np.concatenate(logits))

    # -- the whole pipeline in one graph --------------------------------------------------
    def segment_frame(self, frame, network_size, output_size, with_confidence=False):
        """(labels H x W uint8/uint16, confidence H x W float32 or None) of one H x W x 3 uint8
        RGB frame run at ``network_size`` with outputs at ``output_size``."""
        key = ("frame", frame.shape[:2], tuple(network_size), tuple(output_size), bool(with_confidence))
        with self._request(key, frame.size, lambda: self._frame_graph(*key[1:])) as request:
            outputs = request.infer({0: frame[None]}, share_inputs=True)
            labels = np.array(outputs[0][0], copy=True)
            return labels, (np.array(outputs[1][0], copy=True) if with_confidence else None)

    @contextmanager
    def _request(self, key, size, build):
        """An idle infer request of ``key``'s graph, this call's alone until it returns. A graph
        for an unusually large input is not kept, so its memory goes when the call returns."""
        spike = self._spikes.is_spike(size)
        with self._lock:  # compiling under the lock: a second caller of a new size waits for it
            graph = self._graphs.get(key)
            if graph is not None:
                self._graphs.move_to_end(key)
            else:
                graph = _Graph(self._core.compile_model(build(), self.target, self._config))
                if not spike:
                    self._graphs[key] = graph
                    while len(self._graphs) > MAX_COMPILED:
                        self._graphs.popitem(last=False)
            request = graph.idle.pop() if graph.idle else graph.compiled.create_infer_request()
        try:
            yield request
        finally:
            with self._lock:
                graph.idle.append(request)

    def _logits_graph(self, shape):
        model = self._model.clone()
        model.reshape({model.inputs[0]: list(shape)})
        return model

    def _frame_graph(self, frame_size, network_size, output_size, with_confidence):
        import openvino as ov
        import openvino.opset13 as ops
        model = self._model.clone()
        model.reshape({model.inputs[0]: [1, 3, *network_size]})
        image = ops.parameter([1, *frame_size, 3], ov.Type.u8, name="image")
        x = ops.transpose(ops.convert(image, "f32"), _i64([0, 3, 1, 2]))
        if tuple(frame_size) != tuple(network_size):  # resize before normalising: both linear
            x = _resize(x, network_size)
        x = ops.multiply(ops.subtract(x, _per_channel(IMAGENET_MEAN)), _per_channel(IMAGENET_STD, inverse=True))
        old_input = model.get_parameters()[0]
        for target in list(old_input.output(0).get_target_inputs()):
            target.replace_source_output(x.output(0))
        model.replace_parameter(0, image)
        result = model.get_results()[0]
        outputs = _top_class_nodes(result.input_value(0), output_size, self.num_classes, with_confidence)
        result.input(0).replace_source_output(outputs[0].output(0))
        if with_confidence:
            model.add_results([ops.result(outputs[1])])
        model.validate_nodes_and_infer_types()
        return model

    def compiled_graphs(self):
        """The keys of the graphs kept, least recently used first."""
        with self._lock:
            return list(self._graphs)

    def __repr__(self):
        return (f"OpenVinoNetwork({self.target}, {self.precision}, {self.num_classes} classes, "
                f"{self.streams} stream(s), {len(self._graphs)} compiled graphs)")


class _Graph:
    """A compiled graph and its infer requests not in use (one per concurrent caller)."""

    __slots__ = ("compiled", "idle")

    def __init__(self, compiled):
        self.compiled, self.idle = compiled, []


def _top_class_nodes(logits, output_size, num_classes, with_confidence):
    """Labels (and top probability) of N x C x h x w ``logits`` upsampled to ``output_size``."""
    import openvino.opset11 as ops11
    import openvino.opset13 as ops
    scores = logits if tuple(logits.get_partial_shape().to_shape())[2:] == tuple(output_size) \
        else _resize(logits, output_size)
    # stable sort by value: of equal scores the lowest class index comes first, as max(1)
    top = ops11.topk(scores, ops.constant(np.int64(1)), 1, "max", "value", "i32", stable=True)
    label_type = "u8" if num_classes <= 255 else "u16"
    labels = ops.convert(ops.squeeze(top.output(1), _i64([1])), label_type)
    if not with_confidence:
        return (labels,)
    denominator = ops.reduce_sum(ops.exp(ops.subtract(scores, top.output(0))), _i64([1]), keep_dims=False)
    confidence = ops.divide(ops.constant(np.float32(1.0)), denominator)
    return labels, confidence


def _resize(x, size):
    """Bilinear, half-pixel centres: torch's ``interpolate(align_corners=False)``."""
    import openvino.opset13 as ops
    return ops.interpolate(x, _i64(size), "linear_onnx", "sizes", axes=_i64([2, 3]),
                           coordinate_transformation_mode="half_pixel")


def _per_channel(values, inverse=False):
    import openvino.opset13 as ops
    scaled = np.asarray(values, np.float32).reshape(1, 3, 1, 1) * 255.0
    return ops.constant(1.0 / scaled if inverse else scaled)


def _i64(values):
    import openvino.opset13 as ops
    return ops.constant(np.asarray(values, np.int64))


def _static_size(shape):
    """(h, w) of a static NCHW input shape, else None."""
    if shape.rank.is_dynamic or not all(shape[i].is_static for i in (2, 3)):
        return None
    return (shape[2].get_length(), shape[3].get_length())
