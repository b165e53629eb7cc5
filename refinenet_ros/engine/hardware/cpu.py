"""What this CPU can do, read in one place: the engine's plan and training's mixed precision take
a :class:`CpuInfo` from here (or as an argument), and nothing else reads CPU flags.

``REFINENET_ROS_CPU`` overrides what is read, so that the decisions for every CPU class can be
tested on any machine: a class name (``avx2``, ``avx512_vnni``, ``avx512_bf16``, ``amx``) or a
comma-separated list of ``/proc/cpuinfo`` flags.
"""
import os
import platform
from dataclasses import dataclass

ENVIRONMENT_OVERRIDE = "REFINENET_ROS_CPU"
# The CPU classes this project has met, each with the flags that define it (cumulative).
CPU_CLASSES = {
    "avx2": frozenset({"avx2", "fma"}),
    "avx512_vnni": frozenset({"avx2", "fma", "avx512f", "avx512_vnni"}),
    "avx512_bf16": frozenset({"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"}),
    "amx": frozenset({"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
                      "amx_tile", "amx_bf16", "amx_int8"}),
}
# bf16 arithmetic in hardware (AMX tiles, AVX512-BF16 dot products); elsewhere it is emulated.
NATIVE_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset

    @property
    def native_bf16(self):
        return bool(NATIVE_BF16_FLAGS & self.flags)

    @property
    def cpu_class(self):
        """The richest class in :data:`CPU_CLASSES` whose flags this CPU has, else "baseline"."""
        for name in reversed(CPU_CLASSES):
            if CPU_CLASSES[name] <= self.flags:
                return name
        return "baseline"

    def describe(self):
        return f"{self.model} ({self.cpu_class})"


def _read_cpuinfo(path):
    model, flags = None, frozenset()
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model is None:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = frozenset(value.split())
    except OSError:
        pass
    return model or platform.processor() or platform.machine() or "unknown CPU", flags


def parse_override(text):
    """The flags that ``REFINENET_ROS_CPU``'s value stands for (a class name or a flag list)."""
    text = text.strip()
    if text in CPU_CLASSES:
        return CPU_CLASSES[text]
    flags = frozenset(part.strip() for part in text.replace(" ", ",").split(",") if part.strip())
    if not flags:
        raise ValueError(f"{ENVIRONMENT_OVERRIDE}={text!r}: give a CPU class "
                         f"({', '.join(CPU_CLASSES)}) or a comma-separated list of CPU flags")
    return flags


def cpu_info(cpuinfo="/proc/cpuinfo", environ=None):
    """This CPU's model name and flags; ``REFINENET_ROS_CPU`` replaces the flags (and marks the
    model name as emulated, so a measured choice is not shared with the real CPU's)."""
    environ = os.environ if environ is None else environ
    model, flags = _read_cpuinfo(cpuinfo)
    override = environ.get(ENVIRONMENT_OVERRIDE)
    if override:
        flags = parse_override(override)
        model = f"{model} emulating {override.strip()}"
    return CpuInfo(model, flags)
