"""The networks a :class:`~refinenet_ros.engine.Segmenter` runs, behind one small interface.

A network is called with a normalised float NCHW batch on its ``device`` and returns fp32
logits at ``output_stride``; it has ``backend`` ("torch" or "onnxruntime"), ``device``,
``precision``, ``num_classes``, ``output_stride``, ``fixed_input_size`` ((h, w) of a static
ONNX export, else None), ``arch``, and ``classes``/``palette`` from the weights' metadata.
:func:`load_network` resolves everything once: the device, "default" weights, the backend and
the precision. A new backend is a class with this interface and a branch in load_network.
"""
import importlib.util
import os
import tempfile
import warnings

import torch

from ..choices import BACKENDS
from ..models import (
    create_model,
    fuse_for_inference,
    load_checkpoint,
    num_classes_in,
    read_state_dict,
)
from .paths import resolve_weights
from .precision import (
    INT8,
    TORCH_DTYPES,
    check_precision_supported,
    resolve_device,
    select_precision,
)


class TorchNetwork:
    """The fused PyTorch model on ``device`` in ``precision`` (optionally torch.compile'd)."""

    backend = "torch"
    fixed_input_size = None

    def __init__(self, model, arch, device, precision):
        self.arch, self.device, self.precision = arch, device, precision
        self.dtype = TORCH_DTYPES[precision]
        self.num_classes, self.output_stride = model.num_classes, model.output_stride
        self.model = fuse_for_inference(model.eval()).to(device, self.dtype)
        self.classes = self.palette = None
        self.compiled = None

    def compile(self):
        mode = "reduce-overhead" if self.device.type == "cuda" else None  # CUDA graphs on CUDA
        try:
            self.compiled = torch.compile(self.model, mode=mode)
        except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to eager
            self._compile_failed(exc)

    def _compile_failed(self, exc):
        warnings.warn(f"torch.compile failed, running the model uncompiled: {type(exc).__name__}: "
                      f"{str(exc)[:300]}")
        self.compiled = None

    def __call__(self, x):
        x = x.to(self.dtype)
        if self.compiled is not None:
            try:
                return self.compiled(x).float()
            except Exception as exc:  # noqa: BLE001 - compiler failures surface at the first call
                self._compile_failed(exc)
        return one_frame_at_a_time_on_cpu(self.model, x, self.device).float()


class OnnxRuntimeNetwork:
    """An ONNX export (float NCHW in, logits out) run by ONNX Runtime. ONNX Runtime takes CPU
    arrays, so the Segmenter's pre- and post-processing run on the CPU (``device``)."""

    backend = "onnxruntime"

    def __init__(self, path, device_request, precision, num_classes, arch=None):
        from .onnx_backend import OnnxModel  # onnxruntime is imported only when used
        self.model = OnnxModel(path, device_request)  # "auto" lets it fall back to its CPU provider
        exported = self.model.precision or "fp32"
        if precision not in ("auto", exported):
            raise ValueError(f"{path} was exported in {exported} and runs as it is; precision="
                             f"{precision!r} is not available (use 'auto' or {exported!r})")
        if (self.model.input_mode, self.model.output_mode) != ("float_nchw", "logits"):
            raise ValueError(f"{path} was exported with {self.model.input_mode} input and "
                             f"{self.model.output_mode} output; the Segmenter needs float_nchw input "
                             f"and logits output (export without --uint8-input and --labels)")
        if num_classes is not None and int(num_classes) != self.model.num_classes:
            raise ValueError(f"num_classes={num_classes} but {path} has {self.model.num_classes} classes")
        fixed = self.model.input_size
        self.fixed_input_size = tuple(int(v) for v in fixed) if fixed is not None else None
        self.arch = arch or self.model.arch
        self.device, self.precision = torch.device("cpu"), exported
        self.num_classes, self.output_stride = self.model.num_classes, self.model.output_stride
        self.classes, self.palette = self.model.classes, self.model.palette

    def __call__(self, x):
        return one_frame_at_a_time_on_cpu(self.model, x.float().contiguous(), self.device)


def one_frame_at_a_time_on_cpu(model, x, device):
    """``model(x)``; on CPUs frame by frame, which is faster than a batched call there (docs/
    engine.md: 7.45 vs 4.17 frames/s, batch 4, 360x480, 2 cores: a batch's activations no longer
    fit the caches). CUDA gets the whole batch at once."""
    if device.type != "cpu" or x.shape[0] == 1:
        return model(x)
    return torch.cat([model(x[i:i + 1]) for i in range(x.shape[0])])


def load_network(arch="mbv2", weights="default", num_classes=None, device="auto", precision="auto",
                 backend="auto", compile=False):
    """The network for these settings (see the module docstring); ``weights`` is "default",
    a ``.pth`` checkpoint, an ``.onnx`` export or None (random initialisation)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    select_precision(precision, "cpu", flags=())  # rejects unknown names before any loading
    resolved_device = resolve_device(device)
    precision, reason = _auto_int8(precision, weights, resolved_device, backend, compile)
    backend = choose_backend(backend, resolved_device, precision, compile)
    weights, arch, meta = resolve_weights(weights, arch, precision)
    if weights is not None and os.fspath(weights).lower().endswith(".onnx"):
        network = OnnxRuntimeNetwork(os.fspath(weights), str(device), precision, num_classes, arch)
    elif precision == INT8:
        raise ValueError(f"precision 'int8' runs a quantised ONNX export; make one with "
                         f"'refinenet-export --weights {weights} --output model_int8.onnx --int8 FRAMES' "
                         f"(FRAMES: a folder or list of calibration images) and pass weights=model_int8.onnx")
    else:
        model = _torch_model(arch, weights, num_classes)
        resolved = select_precision(precision, resolved_device.type)
        check_precision_supported(resolved, resolved_device)
        if backend == "onnxruntime":
            network = _export_for_onnxruntime(model, arch, str(device), precision)
        else:
            network = TorchNetwork(model, arch, resolved_device, resolved)
            if compile:
                network.compile()
    network.classes = network.classes or meta.get("classes")
    network.palette = network.palette or meta.get("palette")
    network.precision_reason = reason or f"precision {precision!r} resolved to {network.precision}"
    return network


def _auto_int8(precision, weights, device, backend, compile):
    """``("int8", why)`` where "auto" on a CPU can run the shipped model's int8 export (1.2-1.4x
    the fp32 engine here, 99.5% of pixels labelled alike, CamVid val mIoU 72.40 vs 72.42 fp32);
    else ``(precision, "")``. ``precision="fp32"`` keeps fp32."""
    if precision != "auto" or device.type != "cpu" or backend == "torch" or compile \
            or not (isinstance(weights, str) and weights == "default") \
            or not importlib.util.find_spec("onnxruntime"):
        return precision, ""
    try:
        path, _, meta = resolve_weights("default", precision=INT8)
    except (FileNotFoundError, ValueError):
        return precision, ""
    if path == meta.get("weights"):  # no int8 export ships with this model
        return precision, ""
    return INT8, ("auto on a CPU: the shipped int8 model (99.5% of pixels labelled as by fp32, same "
                  "CamVid mIoU, 1.2-1.4x faster); precision: fp32 for the float model")


def choose_backend(backend, device, precision="auto", compile=False):
    """Resolve ``backend="auto"``: ONNX Runtime for fp32 and int8 on a CPU, where it runs the
    fused model faster than PyTorch (measured 109 vs 156 ms per 360x480 mbv2 frame on 2 AVX2
    cores), PyTorch elsewhere (CUDA, bf16, torch.compile) or when onnxruntime/onnx is missing."""
    if precision == INT8:
        if backend == "torch":
            raise ValueError("precision 'int8' runs on the onnxruntime backend, not backend='torch'")
        check_precision_supported(INT8, device)
        return "onnxruntime"
    if backend != "auto":
        return backend
    fp32 = select_precision(precision, device.type) == "fp32"
    installed = all(importlib.util.find_spec(name) for name in ("onnxruntime", "onnx"))
    if device.type == "cpu" and fp32 and not compile and installed:
        return "onnxruntime"
    return "torch"


def _torch_model(arch, weights, num_classes):
    state_dict = read_state_dict(os.fspath(weights)) if weights is not None else None
    if state_dict is not None:
        stored = num_classes_in(state_dict)
        if num_classes is not None and int(num_classes) != stored:
            raise ValueError(f"num_classes={num_classes} but {weights} has {stored} classes")
        num_classes = stored
    model = create_model(arch, 21 if num_classes is None else num_classes)  # names the archs if unknown
    if state_dict is not None:
        load_checkpoint(model, state_dict)
    return model


def _export_for_onnxruntime(model, arch, device_request, precision):
    """The fused model exported once (dynamic batch and size) to a temporary file that the
    ONNX Runtime session has read before it is removed."""
    from .export import ExportWrapper, export_onnx
    fused = fuse_for_inference(model.eval())
    info = {"arch": arch, "num_classes": model.num_classes, "output_stride": model.output_stride}
    with tempfile.TemporaryDirectory(prefix="refinenet_ros_") as folder:
        path = os.path.join(folder, f"{arch}.onnx")
        export_onnx(ExportWrapper(fused), path, info, dynamic=True, height=96, width=128)
        return OnnxRuntimeNetwork(path, device_request, precision, model.num_classes, arch)
