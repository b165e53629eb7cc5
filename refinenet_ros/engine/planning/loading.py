"""A request (arch, weights, device, precision, backend, ...) -> its plan -> the loaded network;
and, when that network fails at run time, the next of its plan's alternatives."""
import os
from dataclasses import replace

from ..backends import BACKENDS, NETWORKS
from ..hardware.devices import device_type
from ..model.classes import check_class_count
from .plan import make_plan
from .streams import resolve_streams


def load_network(*, arch="mbv2", weights="default", num_classes=None, device="auto", precision="auto",
                 backend="auto", compile=False, input_size=None, streams=1, model_info=None):
    """(network, plan) for these settings (keyword arguments of :func:`.plan.make_plan`):
    ``weights`` is "default", a ``.pth`` checkpoint, an ``.onnx`` model or None (random
    initialisation); ``model_info`` a description file that overrides the model's own
    (:mod:`..model.description`); ``streams``: calls that may run at once where the backend
    overlaps them ("auto": :mod:`.streams`). ``num_classes`` is checked against the weights."""
    plan = make_plan(arch=arch, weights=weights, device=device, precision=precision, backend=backend,
                     compile=compile, input_size=input_size, num_classes=num_classes, streams=streams,
                     model_info=model_info)
    network = _faulty(NETWORKS[plan.backend].load(plan))
    if plan.weights is not None:
        check_class_count(num_classes, network.model_classes, "num_classes", plan.weights)
    return network, plan


def load_alternative(plan, failure):
    """(network, plan) of the first of ``plan``'s alternatives after its own that loads, its reason
    naming ``failure``; (None, why not) when none is left."""
    reasons = []
    for index, (device, backend, precision, file) in enumerate(plan.alternatives[1:], 1):
        alternative = replace(
            plan, device=device, backend=backend, precision=precision, weights=file,
            reason=f"{backend}/{precision} on {device}, after {plan.backend}/{plan.precision} failed: {failure}",
            streams=resolve_streams(plan.streams, BACKENDS[backend], device_type(device)),
            alternatives=plan.alternatives[index:], measured={})
        try:
            return _faulty(NETWORKS[backend].load(alternative)), alternative
        except Exception as exc:  # noqa: BLE001 - an alternative that cannot load is passed over
            reasons.append(f"{backend}/{precision}: {type(exc).__name__}: {exc}"[:200])
    return None, "; ".join(reasons) or "no other backend runs this model here"


# "<backend>:<calls>": that backend's networks fail after so many calls - how the tests make a
# backend fail at run time in a real node process (as a runtime that cannot compile a new size would)
FAULT_ENVIRONMENT = "REFINENET_ROS_BACKEND_FAULT"


def _faulty(network):
    backend, _, calls = os.environ.get(FAULT_ENVIRONMENT, "").partition(":")
    return _FailsAfter(network, int(calls or 0)) if backend == network.backend else network


class _FailsAfter:
    def __init__(self, network, calls):
        self._network, self._left = network, calls

    def __getattr__(self, name):
        return getattr(self._network, name)

    def _count(self):
        self._left -= 1
        if self._left < 0:
            raise RuntimeError(f"injected fault ({FAULT_ENVIRONMENT}): the {self._network.backend} backend fails")

    def __call__(self, *args, **kwargs):
        self._count()
        return self._network(*args, **kwargs)

    def segment_frame(self, *args, **kwargs):
        self._count()
        return self._network.segment_frame(*args, **kwargs)
