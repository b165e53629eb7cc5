"""The ONNX Runtime backend: any described ONNX model (``refinenet-export``'s, or another
framework's with a description: docs/models.md), on a CPU (fp32, int8 QDQ) or CUDA.

:class:`OnnxModel` is one session: :meth:`OnnxModel.run` takes and returns numpy arrays in
whatever format the graph has (uint8 input, label output), so it also works where PyTorch is
not installed; ``__call__`` takes the engine's normalised float NCHW tensor. ONNX Runtime takes
CPU arrays, so a frame's pre- and post-processing run on the CPU: in ONNX Runtime's own graphs
around the model (:mod:`.onnxruntime_graph`), or in the engine's torch code where a request needs
it (several scales, flips, very large outputs).
"""
import os

import numpy as np

from ..hardware.devices import Device, cuda_index, device_name_problem, device_type
from ..hardware.memory import RELEASE, SPIKE
from ..model.description import check_graph, describe
from .base import RANDOM_INIT, BackendSpec, Network, one_frame_at_a_time_on_cpu, with_probed_classes

ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
               "tensor(uint16)": np.uint16, "tensor(int64)": np.int64}


FLOAT_TYPES = ("tensor(float)", "tensor(float16)")


class OnnxModelError(ValueError):
    """An ONNX file that cannot be loaded or used the way it is asked to be."""


def _providers(device, available):
    """Execution providers for ``device`` ("auto", "cpu", "cuda", "cuda:N"), best first."""
    if device == "auto":
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device_name_problem(device) or device_type(device) != "cuda":
        raise OnnxModelError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    index = cuda_index(device) or 0
    if "CUDAExecutionProvider" not in available:
        raise OnnxModelError(f"device {device!r} asked for, but this onnxruntime has no CUDA execution "
                             f"provider (available: {', '.join(available)}); install onnxruntime-gpu")
    providers = []
    if "TensorrtExecutionProvider" in available:
        # TensorRT builds an engine on first use (minutes on a Jetson); cache it across runs.
        cache = os.environ.get("REFINENET_TRT_CACHE",
                               os.path.join(os.path.expanduser("~"), ".cache", "refinenet_ros", "tensorrt"))
        os.makedirs(cache, exist_ok=True)
        providers.append(("TensorrtExecutionProvider", {
            "device_id": index, "trt_engine_cache_enable": True, "trt_engine_cache_path": cache}))
    providers.append(("CUDAExecutionProvider", {"device_id": index}))
    return providers + ["CPUExecutionProvider"]


class OnnxModel:
    """A described ONNX model run by onnxruntime.

    From its description (``description``, else :func:`..description.describe` of ``path``):
    ``num_classes``, ``output_stride``, ``input_mode`` ("float_nchw", "uint8_nhwc",
    "uint8_nchw"), ``output_mode`` ("logits", "probabilities", "labels"), ``arch``,
    ``precision``, ``classes``/``palette`` (or None); from the graph: ``input_size`` ((h, w)
    when static, else None) and ``batch_size`` (int when static, else None).
    """

    def __init__(self, path, device="cpu", threads=None, providers=None, profile_prefix=None,
                 description=None):
        import onnxruntime as ort
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise OnnxModelError(f"ONNX model not found: {self.path}")
        options = ort.SessionOptions()
        # ONNX Runtime's workers spin after each run by default, starving the torch threads
        # that pre- and post-process around it (docs/engine.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # not a warning per constant that the optimiser folds away
        if threads:
            options.intra_op_num_threads = int(threads)
        if profile_prefix:  # ONNX Runtime's per-kernel profile, written by session.end_profiling()
            options.enable_profiling = True
            options.profile_file_prefix = str(profile_prefix)
        providers = providers or _providers(str(device), ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(self.path, options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own types for bad protobufs, bad graphs
            raise OnnxModelError(f"cannot load ONNX model {self.path}: {exc}") from exc
        self.device = str(device)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise OnnxModelError(f"{self.path}: expected one input, got "
                                 f"{[i.name for i in inputs]} -> {[o.name for o in outputs]}")
        # the first output is the model's; others (auxiliary heads) are not computed
        self._input, self._output = inputs[0], outputs[0]
        self._outputs = [self._output.name]
        self._smallest = None  # the smallest input run, for an idle release
        self._shrink = ort.RunOptions()
        gpu = f";gpu:{self.device.partition(':')[2] or 0}" if self.device.startswith("cuda") else ""
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0" + gpu)
        self._describe(description or describe(self.path))

    def _describe(self, description):
        shape = self._input.shape
        if len(shape) != 4:
            raise OnnxModelError(f"{self.path}: input {self._input.name} has shape {shape}, expected 4-D")
        self.description = description
        self.input_mode, self.output_mode = description.input_mode, description.output
        self.arch, self.precision = description.arch, description.precision
        self.output_stride = description.output_stride
        spatial = shape[1:3] if self.input_mode == "uint8_nhwc" else shape[2:4]
        self.input_size = tuple(spatial) if all(isinstance(d, int) for d in spatial) else None
        self.batch_size = shape[0] if isinstance(shape[0], int) else None
        channels = self._output.shape[1] if len(self._output.shape) == 4 else None
        self.num_classes = description.num_classes or (channels if isinstance(channels, int) else None)
        if self.num_classes is None:
            raise OnnxModelError(f"{self.path}: cannot tell the number of classes (name them in its "
                                 f"description's classes, docs/models.md)")
        self.classes, self.palette = description.classes, description.palette
        self._input_dtype = ONNX_DTYPES.get(self._input.type, np.float32)

    def __repr__(self):
        return (f"OnnxModel({self.path!r}, {self.arch}, {self.num_classes} classes, "
                f"{self.input_mode} -> {self.output_mode}, input_size={self.input_size}, "
                f"providers={self.session.get_providers()})")

    def run(self, x, memory=None):
        """numpy in the graph's input format -> numpy output; a static batch size is met by
        padding (or splitting) the batch, and the padding is dropped from the output. After a
        ``memory`` SPIKE or RELEASE (:mod:`..hardware.memory`) the arena gives back its peak."""
        x = np.asarray(x)
        if self._input_dtype == np.uint8 and x.dtype != np.uint8:
            raise OnnxModelError(f"{self.path} takes uint8 images (0-255), got {x.dtype}")
        x = np.ascontiguousarray(x, dtype=self._input_dtype)
        options = self._shrink if memory in (SPIKE, RELEASE) else None
        if self._smallest is None or x[0].size < self._smallest[0].size:
            self._smallest = np.zeros((self.batch_size or 1, *x.shape[1:]), x.dtype)
        if self.batch_size is None or len(x) == self.batch_size:
            return self.session.run(self._outputs, {self._input.name: x}, options)[0]
        parts = []
        for start in range(0, len(x), self.batch_size):
            chunk = x[start:start + self.batch_size]
            missing = self.batch_size - len(chunk)
            if missing:
                chunk = np.concatenate([chunk, np.zeros((missing, *chunk.shape[1:]), chunk.dtype)])
            parts.append(self.session.run(self._outputs, {self._input.name: chunk}, options)[0][:len(chunk) - missing])
        return np.concatenate(parts)

    def release_memory(self):
        """Idle after large inputs: one run of the smallest input with the arena shrunk after it."""
        if self._smallest is not None:
            self.session.run(self._outputs, {self._input.name: self._smallest}, self._shrink)

    def __call__(self, x, memory=None):
        """Normalised float NCHW tensor -> float32 scores (N x C x h x w) or int64 labels
        (N x h x w) on the same device, as the engine's networks return them."""
        if self.input_mode != "float_nchw":
            raise OnnxModelError(
                f"{self.path} was exported with {self.input_mode} input; the engine feeds float NCHW "
                "(export without --uint8-input), or call .run() with data in the exported format")
        if x.dim() != 4 or x.shape[1] != 3:
            raise OnnxModelError(f"expected an N x 3 x H x W tensor, got shape {tuple(x.shape)}")
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            raise OnnxModelError(f"{self.path} has a static input size {self.input_size}, got "
                                 f"{tuple(x.shape[-2:])}; resize to it or export with --dynamic")
        import torch
        out = torch.from_numpy(self.run(x.detach().float().cpu().numpy(), memory))
        if self.output_mode == "labels":
            return out.reshape(out.shape[0], *out.shape[-2:]).long().to(x.device)
        return out.float().to(x.device)


class OnnxRuntimeNetwork(Network):
    """A described ONNX model (or this package's ``.pth``, exported for it) in ONNX Runtime; one
    call at a time (its intra-op threads already use every core). A frame's whole pipeline runs
    in ONNX Runtime too (:meth:`segment_frame`): small graphs before and after the model's
    session (:mod:`.onnxruntime_graph`), so that serving frames needs no PyTorch."""

    spec = BackendSpec("onnxruntime", reads=(".pth", ".onnx", RANDOM_INIT),
                       runs={"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16")},
                       requires=("onnxruntime", "onnx"), whole_frame=True)

    def __init__(self, path, device_request, precision, description):
        self.model = OnnxModel(path, device_request, description=description)
        session = self.model.session
        graph_input, graph_output = session.get_inputs()[0], session.get_outputs()[0]
        dims = (_dims(graph_input.shape), graph_input.type in FLOAT_TYPES, _dims(graph_output.shape))
        self.description, self.fixed_input_size = check_graph(description, path, *dims)
        self.device, self.precision = Device("cpu"), precision  # the engine's tensors stay on the CPU
        self.description = with_probed_classes(self, path, dims, self.model.run)
        self.model_classes = self.description.num_classes
        from .onnxruntime_graph import FrameSessions  # onnx, imported where a network is made
        self._frame_sessions = FrameSessions(self.description)

    @classmethod
    def load(cls, plan):
        if plan.weights is not None and plan.weights.lower().endswith(".onnx"):
            return cls(plan.weights, plan.device, plan.precision, plan.description)
        from .export import exported_onnx
        with exported_onnx(plan) as (path, description):
            return cls(path, plan.device, plan.precision, description)

    def __call__(self, x, memory=None):
        return one_frame_at_a_time_on_cpu(lambda part: self.model(part, memory), x.float().contiguous(),
                                          self.device)

    def segment_frame(self, frame, network_size, output_size, with_confidence=False, label_map=None,
                      memory=None):
        """(labels H x W uint8/uint16, confidence H x W float32 or None) of one H x W x 3 uint8
        RGB frame run at ``network_size`` with outputs at ``output_size``; a labels model gives
        no confidence. ``label_map``: labels and confidence in its classes."""
        with_confidence = bool(with_confidence) and self.description.gives_confidence
        x = self._frame_sessions.preprocess(frame, network_size, memory)
        scores = self.model.run(x, memory)
        return self._frame_sessions.postprocess(scores, network_size, output_size, with_confidence, label_map,
                                                memory)

    def release_memory(self):
        self.model.release_memory()
        self._frame_sessions.release()


def _dims(shape):
    return [d if isinstance(d, int) else None for d in shape]
