"""The PyTorch backend: this package's architectures (``.pth`` checkpoints or random weights),
BatchNorm folded, on a CPU or CUDA in fp32, fp16 or bf16; optionally torch.compile'd."""
import contextlib
import warnings

import torch

from ...models import fuse_for_inference
from ..description import with_num_classes
from ..precision import TORCH_DTYPES
from .base import RANDOM_INIT, BackendSpec, one_frame_at_a_time_on_cpu, torch_model


class TorchNetwork:
    """The fused PyTorch model on ``device`` in ``precision`` (optionally torch.compile'd)."""

    backend = "torch"
    fixed_input_size = None
    streams = 1  # its intra-op threads already use every core

    def __init__(self, model, description, device, precision):
        self.description, self.device, self.precision = description, device, precision
        self.arch = description.arch
        self.dtype = TORCH_DTYPES[precision]
        self.num_classes, self.output_stride = model.num_classes, model.output_stride
        self.model = fuse_for_inference(model.eval()).to(device, self.dtype)
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


@contextlib.contextmanager
def _quiet_compiler():
    """torch.compile of other torch versions warns of its own deprecated internals; a caller
    that turns warnings into errors (pytest -W error) must not lose the compile to them."""
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
            warnings.filterwarnings("ignore", category=category)
        yield


def load(plan):
    model = torch_model(plan.arch, plan.weights, plan.num_classes)
    description = with_num_classes(plan.description, model.num_classes)
    network = TorchNetwork(model, description, torch.device(plan.device), plan.precision)
    if plan.compile:
        network.compile()
    return network


SPEC = BackendSpec(
    "torch", reads=(".pth", RANDOM_INIT), runs={"cpu": ("fp32", "bf16"), "cuda": ("fp32", "fp16", "bf16")},
    requires=("torch",), load=load, compiles=True)
