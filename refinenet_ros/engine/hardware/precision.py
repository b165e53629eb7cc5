"""Devices and numeric precisions: their names, parsed and checked in one place (no ROS). torch
is imported only where CUDA may be there to ask about, so a CPU-only process never loads it.

Which precision and backend ``"auto"`` means is decided by :mod:`..planning.plan`, not here.
"""
import os

from ...choices import PRECISIONS as PRECISION_NAMES
from .devices import INTEL_DEVICES, cuda_index, device_name_problem, device_type

TORCH_PRECISIONS = ("fp32", "bf16", "fp16")
INT8 = "int8"  # a quantised ONNX export (ONNX Runtime, OpenVINO), not a torch dtype
assert PRECISION_NAMES == ("auto", *TORCH_PRECISIONS, INT8)
# Where an NVIDIA driver shows itself (desktop GPUs, Jetsons): without any, "auto" is the CPU.
NVIDIA_DEVICE_FILES = ("/dev/nvidia0", "/dev/nvidiactl", "/dev/nvhost-ctrl-gpu", "/dev/nvgpu")


def torch_dtype(precision):
    import torch
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def cuda_may_be_present():
    """Whether a CUDA device could be there (an NVIDIA driver's device files): else torch, and
    its CUDA libraries, need not be loaded to know there is none."""
    return any(os.path.exists(path) for path in NVIDIA_DEVICE_FILES)


def device_name(device):
    """``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` -> "cpu" or "cuda:N", checked; torch is
    asked only where CUDA may be present."""
    problem = device_name_problem(device)
    if problem or device in INTEL_DEVICES:
        raise ValueError(problem or f"device {device!r} runs through OpenVINO, not PyTorch")
    if device == "cpu" or (device == "auto" and not cuda_may_be_present()):
        return "cpu"
    resolved = resolve_device(device)
    return "cpu" if resolved.type == "cpu" else f"cuda:{resolved.index}"


def check_precision_name(precision):
    if precision not in PRECISION_NAMES:
        raise ValueError(f"unknown precision {precision!r}; choose {', '.join(PRECISION_NAMES)}")
    return precision


def resolve_device(device):
    """``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` -> a usable :class:`torch.device`."""
    import torch
    if isinstance(device, torch.device):
        device = str(device)
    problem = device_name_problem(device)
    if problem or device in INTEL_DEVICES:
        raise ValueError(problem or f"device {device!r} runs through OpenVINO, not PyTorch")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available "
                         f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use device='cpu'")
    index = cuda_index(device)
    index = torch.cuda.current_device() if index is None else index
    if index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA "
                         f"device(s) exist")
    return torch.device("cuda", index)


def check_precision_supported(precision, device):
    """Raise ValueError for a precision the device cannot run (well)."""
    kind = device.type if hasattr(device, "type") else device_type(device)
    if kind == "cpu" and precision == "fp16":
        # no fast fp16 convolutions on CPUs: a small frame takes minutes.
        raise ValueError("precision 'fp16' is not supported on the CPU; use 'fp32' (or 'bf16' on CPUs "
                         "with AMX/AVX512-BF16)")
    if kind == "cuda" and precision == INT8:
        raise ValueError("precision 'int8' runs on the CPU (ONNX Runtime, OpenVINO); on CUDA use "
                         "'fp16' or 'fp32'")
    if kind == "cuda" and precision == "bf16":
        import torch
        if not torch.cuda.is_bf16_supported():
            raise ValueError(f"precision 'bf16' is not supported on {torch.cuda.get_device_name(device)}; "
                             f"use 'fp16' or 'fp32'")
