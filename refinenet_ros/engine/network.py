"""A request (arch, weights, device, precision, backend, ...) -> the plan -> a loaded network."""
from .backends import BACKENDS
from .plan import make_plan


def load_network(arch="mbv2", weights="default", num_classes=None, device="auto", precision="auto",
                 backend="auto", compile=False, input_size=None, streams=1, model_info=None):
    """The network for these settings; ``weights`` is "default", a ``.pth`` checkpoint, an
    ``.onnx`` model or None (random initialisation); ``model_info`` a description file that
    overrides the model's own (:mod:`.description`); ``streams``: calls that may run at once,
    where the backend can overlap them ("auto": as many as pay)."""
    plan = make_plan(arch, weights, device, precision, backend, compile, input_size,
                     num_classes=num_classes, streams=streams, model_info=model_info)
    network = BACKENDS[plan.backend].load(plan)
    if num_classes is not None and int(num_classes) != network.num_classes:
        raise ValueError(f"num_classes={num_classes} but {plan.weights} has {network.num_classes} classes")
    network.plan, network.precision_reason = plan, plan.reason
    return network
