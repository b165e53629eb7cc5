"""The inference backends, one module each: its network class, ``load(plan)`` and ``SPEC`` (what
weight files it reads, which (device, precision) pairs it runs, the modules it needs).

:mod:`..plan` decides from these declarations alone; adding a backend is one module here plus
its ``SPEC`` in :data:`BACKENDS` (docs/architecture.md). The network interface: :mod:`.base`.
"""
from . import onnxruntime_backend, openvino_backend, torch_backend
from .base import RANDOM_INIT, TWO_AT_ONCE, BackendSpec

BACKENDS = {spec.name: spec for spec in (torch_backend.SPEC, onnxruntime_backend.SPEC, openvino_backend.SPEC)}
# Without a measurement, on a CPU: the order in which candidates are preferred.
STATIC_PREFERENCE = ("onnxruntime", "openvino", "torch")

__all__ = ["BACKENDS", "RANDOM_INIT", "STATIC_PREFERENCE", "TWO_AT_ONCE", "BackendSpec"]
