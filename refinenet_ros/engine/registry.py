"""The inference backends, each declared once: what weight files it reads, which (device,
precision) pairs it runs, whether it is installed here, and how it loads a network.

:mod:`.plan` decides from these declarations alone; a new backend is one :class:`BackendSpec`
in :data:`BACKENDS` plus its network class (the interface in :mod:`.backends`).
"""
import importlib
import importlib.util
from dataclasses import dataclass

RANDOM_INIT = None  # a weights "file" of None: a randomly initialised model, for tests
TWO_AT_ONCE = " two at once"  # suffix of a measured label: two calls in flight (ms per frame)


@dataclass(frozen=True)
class BackendSpec:
    name: str
    reads: tuple             # weight file kinds: ".pth", ".onnx", RANDOM_INIT
    runs: dict               # device type -> precisions it runs there
    requires: tuple          # modules that must be importable
    loader: str              # "module:function" (plan, num_classes, compile, streams) -> network
    compiles: bool = False   # runs torch.compile
    overlaps: bool = False   # runs several calls at once on a CPU (streams)

    def installed(self):
        return all(importlib.util.find_spec(name) is not None for name in self.requires)

    def refusal(self, device_type, precision, kind, compile=False):
        """Why this backend cannot run the request, or None when it can."""
        if precision not in self.runs.get(device_type, ()):
            places = "; ".join(f"{d}: {', '.join(p)}" for d, p in self.runs.items())
            return f"the {self.name} backend does not run {precision} on {device_type} (it runs {places})"
        if kind not in self.reads:
            what = "random initialisation" if kind is RANDOM_INIT else f"{kind} files"
            return f"the {self.name} backend does not read {what}"
        if compile and not self.compiles:
            return f"compile=True needs the torch backend, not {self.name}"
        if not self.installed():
            missing = [n for n in self.requires if importlib.util.find_spec(n) is None]
            return f"the {self.name} backend is not installed (missing: {', '.join(missing)})"
        return None

    def load(self, plan, num_classes=None, compile=False, streams=1):
        module, _, function = self.loader.partition(":")
        return getattr(importlib.import_module(module), function)(plan, num_classes, compile, streams)


BACKENDS = {
    "torch": BackendSpec(
        "torch", reads=(".pth", RANDOM_INIT),
        runs={"cpu": ("fp32", "bf16"), "cuda": ("fp32", "fp16", "bf16")},
        requires=("torch",), loader="refinenet_ros.engine.backends:load_torch", compiles=True),
    "onnxruntime": BackendSpec(
        "onnxruntime", reads=(".pth", ".onnx", RANDOM_INIT),
        runs={"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16")},
        requires=("onnxruntime", "onnx"), loader="refinenet_ros.engine.backends:load_onnxruntime"),
    "openvino": BackendSpec(
        "openvino", reads=(".pth", ".onnx", RANDOM_INIT),
        runs={"cpu": ("fp32", "bf16", "int8"), "intel_gpu": ("fp32", "fp16", "int8"),
              "intel_npu": ("fp16", "int8")},
        requires=("openvino", "onnx"), loader="refinenet_ros.engine.backends:load_openvino",
        overlaps=True),
}
# Without a measurement, on a CPU: the order in which candidates are preferred.
STATIC_PREFERENCE = ("onnxruntime", "openvino", "torch")
