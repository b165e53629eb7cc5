"""A request (arch, weights, device, precision, backend, ...) -> its plan -> the loaded network."""
from ..backends import NETWORKS
from ..model.classes import check_class_count
from .plan import make_plan


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
    network = NETWORKS[plan.backend].load(plan)
    if plan.weights is not None:
        check_class_count(num_classes, network.model_classes, "num_classes", plan.weights)
    return network, plan
