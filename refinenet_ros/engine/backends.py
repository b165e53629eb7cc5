"""The networks a :class:`~refinenet_ros.engine.Segmenter` runs, behind one small interface.

A network is called with a normalised float NCHW batch on its ``device`` and returns fp32
logits at ``output_stride``; it has ``backend`` (a :data:`.registry.BACKENDS` name), ``device``,
``precision``, ``num_classes``, ``output_stride``, ``fixed_input_size`` ((h, w) of a static
ONNX export, else None), ``arch``, ``classes``/``palette`` from the weights' metadata, and
``streams``: how many calls may run at once (1 but for OpenVINO's streams). A network may also
offer ``segment_frame(frame, network_size, output_size, with_confidence)``,
the whole pipeline of one uint8 frame inside its runtime (OpenVINO does). :func:`load_network`
makes the plan (:mod:`.plan`) and loads it with the backend's ``load_*`` function here.
"""
import contextlib
import os
import tempfile
import warnings

import torch

from ..models import (
    create_model,
    fuse_for_inference,
    load_checkpoint,
    num_classes_in,
    read_state_dict,
)
from .plan import make_plan, onnx_metadata
from .precision import TORCH_DTYPES
from .registry import BACKENDS


class TorchNetwork:
    """The fused PyTorch model on ``device`` in ``precision`` (optionally torch.compile'd)."""

    backend = "torch"
    fixed_input_size = None
    streams = 1  # its intra-op threads already use every core

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
            with _quiet_compiler():
                self.compiled = torch.compile(self.model, mode=mode)
        except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to eager
            self._compile_failed(exc)
        self._compiled_once = False

    def _compile_failed(self, exc):
        warnings.warn(f"torch.compile failed, running the model uncompiled: {type(exc).__name__}: "
                      f"{str(exc)[:300]}")
        self.compiled = None

    def __call__(self, x):
        x = x.to(self.dtype)
        if self.compiled is not None:
            try:
                if self._compiled_once:
                    return self.compiled(x).float()
                with _quiet_compiler():  # the first call compiles
                    logits = self.compiled(x).float()
                self._compiled_once = True
                return logits
            except Exception as exc:  # noqa: BLE001 - compiler failures surface at the first call
                self._compile_failed(exc)
        return one_frame_at_a_time_on_cpu(self.model, x, self.device).float()


class OnnxRuntimeNetwork:
    """An ONNX export (float NCHW in, logits out) run by ONNX Runtime. ONNX Runtime takes CPU
    arrays, so the Segmenter's pre- and post-processing run on the CPU (``device``)."""

    backend = "onnxruntime"
    streams = 1  # its intra-op threads already use every core

    def __init__(self, path, device_request, precision, num_classes, arch=None):
        from .onnx_backend import OnnxModel  # onnxruntime is imported only when used
        self.model = OnnxModel(path, device_request)
        exported = self.model.precision or "fp32"
        _check_float_logits(self.model, path)
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


@contextlib.contextmanager
def _quiet_compiler():
    """torch.compile of other torch versions warns of its own deprecated internals; a caller
    that turns warnings into errors (pytest -W error) must not lose the compile to them."""
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
            warnings.filterwarnings("ignore", category=category)
        yield


def one_frame_at_a_time_on_cpu(model, x, device):
    """``model(x)``; on CPUs frame by frame, which is faster than a batched call there (a batch's
    activations no longer fit the caches; docs/engine.md). CUDA gets the whole batch at once."""
    if device.type != "cpu" or x.shape[0] == 1:
        return model(x)
    return torch.cat([model(x[i:i + 1]) for i in range(x.shape[0])])


def load_network(arch="mbv2", weights="default", num_classes=None, device="auto", precision="auto",
                 backend="auto", compile=False, input_size=None, streams=1):
    """The network for these settings (see the module docstring); ``weights`` is "default",
    a ``.pth`` checkpoint, an ``.onnx`` export or None (random initialisation); ``streams``:
    calls that may run at once, where the backend can overlap them ("auto": as many as pay)."""
    plan = make_plan(arch, weights, device, precision, backend, compile, input_size)
    network = BACKENDS[plan.backend].load(plan, num_classes, compile, streams)
    network.classes = network.classes or plan.meta.get("classes")
    network.palette = network.palette or plan.meta.get("palette")
    network.plan, network.precision_reason = plan, plan.reason
    return network


def load_torch(plan, num_classes, compile, streams=1):
    model = _torch_model(plan.arch, plan.weights, num_classes)
    network = TorchNetwork(model, plan.arch or "mbv2", torch.device(plan.device), plan.precision)
    if compile:
        network.compile()
    return network


def load_onnxruntime(plan, num_classes, compile, streams=1):
    if plan.weights is not None and plan.weights.lower().endswith(".onnx"):
        return OnnxRuntimeNetwork(plan.weights, plan.device, plan.precision, num_classes, plan.arch)
    with _exported(plan, num_classes) as (path, arch, classes):
        return OnnxRuntimeNetwork(path, plan.device, plan.precision, classes, arch)


def load_openvino(plan, num_classes, compile, streams=1):
    from .onnx_backend import export_info
    from .openvino_backend import OpenVinoNetwork, resolve_streams
    streams = resolve_streams(streams, plan.device_type, gain=plan.streams_gain)
    if plan.weights is not None and plan.weights.lower().endswith(".onnx"):
        info = export_info(plan.weights, onnx_metadata(plan.weights))
        _check_float_logits(info, plan.weights)
        network = OpenVinoNetwork(plan.weights, plan.device_type, plan.precision, info.num_classes,
                                  info.output_stride, streams=streams)
        if num_classes is not None and int(num_classes) != network.num_classes:
            raise ValueError(f"num_classes={num_classes} but {plan.weights} has {network.num_classes} classes")
        network.arch, network.classes, network.palette = plan.arch or info.arch, info.classes, info.palette
        return network
    with _exported(plan, num_classes) as (path, arch, classes):
        network = OpenVinoNetwork(path, plan.device_type, plan.precision, classes, 4, streams=streams)
    network.arch, network.classes, network.palette = arch, None, None
    return network


def _check_float_logits(model, path):
    if (model.input_mode, model.output_mode) != ("float_nchw", "logits"):
        raise ValueError(f"{path} was exported with {model.input_mode} input and "
                         f"{model.output_mode} output; the Segmenter needs float_nchw input "
                         f"and logits output (export without --uint8-input and --labels)")


def _torch_model(arch, weights, num_classes):
    state_dict = read_state_dict(os.fspath(weights)) if weights is not None else None
    if state_dict is not None:
        stored = num_classes_in(state_dict)
        if num_classes is not None and int(num_classes) != stored:
            raise ValueError(f"num_classes={num_classes} but {weights} has {stored} classes")
        num_classes = stored
    model = create_model(arch or "mbv2", 21 if num_classes is None else num_classes)  # names the archs if unknown
    if state_dict is not None:
        load_checkpoint(model, state_dict)
    return model


class _exported:
    """The fused float model exported once (dynamic batch and size) to a temporary ONNX file,
    yielded as (path, arch, num_classes) while a runtime reads it; removed afterwards."""

    def __init__(self, plan, num_classes):
        self.plan, self.num_classes = plan, num_classes

    def __enter__(self):
        from .export import ExportWrapper, export_onnx
        arch = self.plan.arch or "mbv2"
        model = _torch_model(arch, self.plan.weights, self.num_classes)
        fused = fuse_for_inference(model.eval())
        info = {"arch": arch, "num_classes": model.num_classes, "output_stride": model.output_stride}
        self.folder = tempfile.TemporaryDirectory(prefix="refinenet_ros_")
        path = os.path.join(self.folder.name, f"{arch}.onnx")
        export_onnx(ExportWrapper(fused), path, info, dynamic=True, height=96, width=128)
        return path, arch, model.num_classes

    def __exit__(self, *exc):
        self.folder.cleanup()
