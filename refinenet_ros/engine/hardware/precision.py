"""Devices and numeric precisions: their names, parsed and checked in one place (no ROS).

Which precision and backend ``"auto"`` means is decided by :mod:`..planning.plan`, not here.
"""
import torch

from ...choices import PRECISIONS as PRECISION_NAMES
from .devices import INTEL_DEVICES, cuda_index, device_name_problem, device_type

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
INT8 = "int8"  # a quantised ONNX export (ONNX Runtime, OpenVINO), not a torch dtype
assert PRECISION_NAMES == ("auto", *TORCH_DTYPES, INT8)


def check_precision_name(precision):
    if precision not in PRECISION_NAMES:
        raise ValueError(f"unknown precision {precision!r}; choose {', '.join(PRECISION_NAMES)}")
    return precision


def resolve_device(device):
    """``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` -> a usable :class:`torch.device`."""
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
    kind = device.type if isinstance(device, torch.device) else device_type(device)
    if kind == "cpu" and precision == "fp16":
        # no fast fp16 convolutions on CPUs: a small frame takes minutes.
        raise ValueError("precision 'fp16' is not supported on the CPU; use 'fp32' (or 'bf16' on CPUs "
                         "with AMX/AVX512-BF16)")
    if kind == "cuda" and precision == INT8:
        raise ValueError("precision 'int8' runs on the CPU (ONNX Runtime, OpenVINO); on CUDA use "
                         "'fp16' or 'fp32'")
    if kind == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision 'bf16' is not supported on {torch.cuda.get_device_name(device)}; "
                         f"use 'fp16' or 'fp32'")
