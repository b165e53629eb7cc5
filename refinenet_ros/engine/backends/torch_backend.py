"""The PyTorch backend: this package's architectures (``.pth`` checkpoints or random weights),
BatchNorm folded, on a CPU or CUDA in fp32, fp16 or bf16; optionally torch.compile'd."""
import contextlib
import warnings
from dataclasses import replace

from ..hardware.precision import torch_dtype
from ..model.description import with_num_classes
from .base import RANDOM_INIT, BackendSpec, Network, one_frame_at_a_time_on_cpu


class TorchNetwork(Network):
    """The fused PyTorch model on ``device`` in ``precision`` (optionally torch.compile'd); one
    call at a time (its intra-op threads already use every core)."""

    spec = BackendSpec("torch", reads=(".pth", RANDOM_INIT),
                       runs={"cpu": ("fp32", "bf16"), "cuda": ("fp32", "fp16", "bf16")},
                       requires=("torch",), compiles=True, cuda_graphs=True)

    def __init__(self, model, description, device, precision):
        from ...models import fuse_for_inference  # here: torch is imported where this backend runs
        self.description = replace(with_num_classes(description, model.num_classes),
                                   output_stride=model.output_stride)
        self.device, self.precision = device, precision
        self.dtype = torch_dtype(precision)
        self.model_classes = model.num_classes
        self.model = fuse_for_inference(model.eval()).to(device, self.dtype)
        self.compiled = None

    @classmethod
    def load(cls, plan):
        import torch

        from .export import torch_model
        model = torch_model(plan.arch, plan.weights, plan.num_classes)
        network = cls(model, plan.description, torch.device(plan.device), plan.precision)
        if plan.compile:
            network.compile()
        return network

    def compile(self):
        import torch
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

    def __call__(self, x, memory=None):
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
