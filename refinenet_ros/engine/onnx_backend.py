"""Run a model exported by ``refinenet-export`` through onnxruntime.

:class:`OnnxModel` stands in for the PyTorch model inside the engine: normalised float32 NCHW
in, float32 logits at ``output_stride`` out. :meth:`OnnxModel.run` takes and returns numpy
arrays in whatever format the graph was exported with (uint8 input, label output), so it also
works where PyTorch is not installed; torch is imported only when ``__call__`` gets a tensor.
"""
import json
import os
from types import SimpleNamespace

import numpy as np

from .devices import cuda_index, device_name_problem, device_type
from .memory import SpikeDetector

ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
               "tensor(uint16)": np.uint16, "tensor(int64)": np.int64}


class OnnxModelError(ValueError):
    """An ONNX file that cannot be loaded or used the way it is asked to be."""


def export_info(path, meta):
    """An export's refinenet_ros metadata (``meta``, as :func:`.plan.onnx_metadata` reads it)
    parsed without a runtime; ``num_classes`` is None where the metadata does not say."""
    try:
        classes = meta.get("num_classes")
        return SimpleNamespace(
            input_mode=meta.get("input_mode", "float_nchw"), output_mode=meta.get("output_mode", "logits"),
            arch=meta.get("arch"), output_stride=int(meta.get("output_stride", 4)),
            num_classes=int(classes) if classes is not None else None,
            classes=json.loads(meta["classes"]) if "classes" in meta else None,
            palette=json.loads(meta["palette"]) if "palette" in meta else None)
    except (ValueError, TypeError) as exc:  # includes json.JSONDecodeError
        raise OnnxModelError(f"{path}: malformed refinenet_ros metadata: {exc}") from exc


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
    """An exported Light-Weight RefineNet run by onnxruntime.

    Attributes from the export's metadata: ``num_classes``, ``output_stride``, ``input_mode``
    ("float_nchw", "uint8_nhwc", "uint8_nchw"), ``output_mode`` ("logits", "labels"), ``arch``,
    ``precision``, ``classes``/``palette`` (or None); from the graph: ``input_size`` ((h, w)
    when static, else None) and ``batch_size`` (int when static, else None).
    """

    def __init__(self, path, device="cpu", threads=None, providers=None, profile_prefix=None):
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
        if len(inputs) != 1 or len(outputs) != 1:
            raise OnnxModelError(f"{self.path}: expected one input and one output, got "
                                 f"{[i.name for i in inputs]} -> {[o.name for o in outputs]}")
        self._input, self._output = inputs[0], outputs[0]
        self._spikes = SpikeDetector()
        self._shrink = ort.RunOptions()
        gpu = f";gpu:{self.device.partition(':')[2] or 0}" if self.device.startswith("cuda") else ""
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0" + gpu)
        try:
            self._read_metadata(self.session.get_modelmeta().custom_metadata_map)
        except OnnxModelError:
            raise
        except (ValueError, TypeError) as exc:  # includes json.JSONDecodeError
            raise OnnxModelError(f"{self.path}: malformed refinenet_ros metadata: {exc}") from exc

    def _read_metadata(self, meta):
        shape = self._input.shape
        if len(shape) != 4:
            raise OnnxModelError(f"{self.path}: input {self._input.name} has shape {shape}, expected 4-D")
        self.input_mode = meta.get("input_mode") or (
            "float_nchw" if self._input.type in ("tensor(float)", "tensor(float16)") else "uint8_nchw")
        self.output_mode = meta.get("output_mode", "logits")
        self.arch = meta.get("arch")
        self.precision = meta.get("precision")
        self.output_stride = int(meta.get("output_stride", 4))
        spatial = shape[1:3] if self.input_mode == "uint8_nhwc" else shape[2:4]
        self.input_size = tuple(spatial) if all(isinstance(d, int) for d in spatial) else None
        self.batch_size = shape[0] if isinstance(shape[0], int) else None
        classes = meta.get("num_classes") or (
            self._output.shape[1] if self.output_mode == "logits" else None)
        if not isinstance(classes, (int, str)) or not str(classes).isdigit():
            raise OnnxModelError(f"{self.path}: cannot tell the number of classes (no num_classes "
                                 "metadata; export it with refinenet-export)")
        self.num_classes = int(classes)
        self.classes = json.loads(meta["classes"]) if "classes" in meta else None
        self.palette = json.loads(meta["palette"]) if "palette" in meta else None
        self._input_dtype = ONNX_DTYPES.get(self._input.type, np.float32)

    def __repr__(self):
        return (f"OnnxModel({self.path!r}, {self.arch}, {self.num_classes} classes, "
                f"{self.input_mode} -> {self.output_mode}, input_size={self.input_size}, "
                f"providers={self.session.get_providers()})")

    def run(self, x):
        """numpy in the graph's input format -> numpy output; a static batch size is met by
        padding (or splitting) the batch, and the padding is dropped from the output."""
        x = np.asarray(x)
        if self._input_dtype == np.uint8 and x.dtype != np.uint8:
            raise OnnxModelError(f"{self.path} takes uint8 images (0-255), got {x.dtype}")
        x = np.ascontiguousarray(x, dtype=self._input_dtype)
        options = self._shrink if self._spikes.is_spike(x.size) else None  # arena back after a spike
        if self.batch_size is None or len(x) == self.batch_size:
            return self.session.run(None, {self._input.name: x}, options)[0]
        parts = []
        for start in range(0, len(x), self.batch_size):
            chunk = x[start:start + self.batch_size]
            missing = self.batch_size - len(chunk)
            if missing:
                chunk = np.concatenate([chunk, np.zeros((missing, *chunk.shape[1:]), chunk.dtype)])
            parts.append(self.session.run(None, {self._input.name: chunk}, options)[0][:len(chunk) - missing])
        return np.concatenate(parts)

    def __call__(self, x):
        """Normalised float NCHW RGB tensor -> float32 logits tensor on the same device, as the
        PyTorch models do. Only for graphs exported with float input and logits output."""
        if self.input_mode != "float_nchw" or self.output_mode != "logits":
            raise OnnxModelError(
                f"{self.path} was exported with {self.input_mode} input and {self.output_mode} output; "
                "the engine needs float_nchw input and logits output (export without --uint8-input and "
                "--labels), or call .run() with data in the exported format")
        if x.dim() != 4 or x.shape[1] != 3:
            raise OnnxModelError(f"expected an N x 3 x H x W tensor, got shape {tuple(x.shape)}")
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            raise OnnxModelError(f"{self.path} has a static input size {self.input_size}, got "
                                 f"{tuple(x.shape[-2:])}; resize to it or export with --dynamic")
        import torch
        logits = self.run(x.detach().float().cpu().numpy())
        return torch.from_numpy(logits).float().to(x.device)
