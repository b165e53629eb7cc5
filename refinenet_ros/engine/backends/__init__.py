"""How a network runs: one module per runtime, each a :class:`.base.Network` with its ``spec``
(what weight files it reads, which (device, precision) pairs it runs, the modules it needs, what it
can do) and its ``load(plan)``; and the export that feeds the ONNX runtimes (:mod:`.export`).

:mod:`..planning` decides from the specs alone; adding a backend is one module here plus its
class in :data:`NETWORKS` (docs/architecture.md).
"""
from .base import RANDOM_INIT, BackendSpec, Network
from .onnxruntime_backend import OnnxRuntimeNetwork
from .openvino_backend import OpenVinoNetwork
from .torch_backend import TorchNetwork

NETWORKS = {network.spec.name: network for network in (TorchNetwork, OnnxRuntimeNetwork, OpenVinoNetwork)}
BACKENDS = {name: network.spec for name, network in NETWORKS.items()}  # what the plan decides from
# Without a measurement, on a CPU: the order in which candidates are preferred.
STATIC_PREFERENCE = ("onnxruntime", "openvino", "torch")

__all__ = ["BACKENDS", "NETWORKS", "RANDOM_INIT", "STATIC_PREFERENCE", "BackendSpec", "Network"]
