"""Device and numeric precision choice for the engine (pure functions, no ROS).

``"auto"`` precision is fp16 on CUDA and, on a CPU, bf16 only where the CPU has AMX. Elsewhere
fp32, which the CPU backend runs through ONNX Runtime: on an AVX2-only EPYC bf16 is emulated
and about 10x slower than fp32, and with AVX512-BF16 but no AMX it is native yet still half
as fast as the fp32 engine (Intel Xeon, 2 cores, 360x480 mbv2: 4.70 vs 9.87 frames/s).
``"int8"`` is never chosen here: it runs a statically quantised ONNX export (``refinenet-export
--int8``) through ONNX Runtime on the CPU, and its labels differ slightly from fp32 (see the
README's performance section); the backends layer picks it for the shipped model.
"""
import torch

from ..choices import PRECISIONS as PRECISION_NAMES

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
INT8 = "int8"  # ONNX Runtime only, CPU: a quantised export, not a torch dtype
assert PRECISION_NAMES == ("auto", *TORCH_DTYPES, INT8)
# bf16 arithmetic in hardware (AMX tiles, AVX512-BF16 dot products); elsewhere it is emulated.
NATIVE_BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
# Where auto runs inference in bf16: AMX alone (AVX512-BF16 measured slower than fp32, above).
BF16_INFERENCE_CPU_FLAGS = frozenset({"amx_bf16"})


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU feature flags listed in ``cpuinfo`` (empty where it cannot be read)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def select_precision(requested, device_type, flags=None):
    """Resolve ``"auto"`` to a concrete precision name; validate explicit ones.

    ``flags`` are CPU feature flags (read from /proc/cpuinfo when None), used for CPUs only.
    """
    if requested not in PRECISION_NAMES:
        raise ValueError(f"unknown precision {requested!r}; choose {', '.join(PRECISION_NAMES)}")
    if requested != "auto":
        return requested
    if device_type == "cuda":
        return "fp16"
    if flags is None:
        flags = cpu_flags()
    return "bf16" if BF16_INFERENCE_CPU_FLAGS & set(flags) else "fp32"


def resolve_device(device):
    """``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` -> a usable :class:`torch.device`."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'auto', 'cpu' or 'cuda:0', got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if resolved.type == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available "
                         f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use device='cpu'")
    index = torch.cuda.current_device() if resolved.index is None else resolved.index
    if index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA "
                         f"device(s) exist")
    return torch.device("cuda", index)


def check_precision_supported(precision, device):
    """Raise ValueError for a precision the device cannot run (well)."""
    if device.type == "cpu" and precision == "fp16":
        # PyTorch has no fast fp16 convolutions on CPUs: a small frame takes minutes.
        raise ValueError("precision 'fp16' is not supported on the CPU; use 'fp32' (or 'bf16' on CPUs "
                         "with AMX/AVX512-BF16)")
    if device.type == "cuda" and precision == INT8:
        raise ValueError("precision 'int8' runs on the CPU (ONNX Runtime); on CUDA use 'fp16' or 'fp32'")
    if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision 'bf16' is not supported on {torch.cuda.get_device_name(device)}; "
                         f"use 'fp16' or 'fp32'")
