"""What every backend shares: its declaration (:class:`BackendSpec`) and the network interface.

A network is called with a normalised float NCHW batch on its ``device`` (preprocessed as its
:class:`~..description.ModelDescription` says) and returns, by ``description.output``, fp32
logits or probabilities (N x C x h x w, any stride) or labels (N x h x w, int64). It has
``backend``, ``device``, ``precision``, ``description``, ``num_classes``, ``arch``,
``fixed_input_size`` ((h, w) of a static model, else None) and ``streams`` (how many calls may
run at once). It may offer ``segment_frame(frame, network_size, output_size, with_confidence,
label_map)``: one uint8 frame's whole pipeline inside its runtime (OpenVINO does).

Each backend is one module of this package: its network class, ``load(plan)`` and ``SPEC``.
"""
import importlib.util
import os
import tempfile
from dataclasses import dataclass

import torch

from ...models import create_model, fuse_for_inference, load_checkpoint, num_classes_in, read_state_dict

RANDOM_INIT = None  # a weights "file" of None: a randomly initialised model, for tests
TWO_AT_ONCE = " two at once"  # suffix of a measured label: two calls in flight (ms per frame)


@dataclass(frozen=True)
class BackendSpec:
    name: str
    reads: tuple             # weight file kinds: ".pth", ".onnx", RANDOM_INIT
    runs: dict               # device type -> precisions it runs there
    requires: tuple          # modules that must be importable
    load: object             # plan -> network
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


def one_frame_at_a_time_on_cpu(model, x, device):
    """``model(x)``; on CPUs frame by frame, which is faster than a batched call there (a batch's
    activations no longer fit the caches; docs/engine.md). CUDA gets the whole batch at once."""
    if device.type != "cpu" or x.shape[0] == 1:
        return model(x)
    return torch.cat([model(x[i:i + 1]) for i in range(x.shape[0])])


def with_probed_classes(network, path, graph_dims):
    """Graphs exported from other frameworks often leave the class dimension symbolic: then one
    small frame finds it, and the description is checked against it (``graph_dims``: the
    arguments of :func:`..description.check_graph` after the description and path)."""
    from ..description import check_graph
    input_dims, is_float, output_dims = graph_dims
    if network.description.output == "labels" or output_dims[1] is not None or len(output_dims) != 4:
        return network.description
    size = network.fixed_input_size or network.description.input.padded((64, 64))
    channels = network(torch.zeros(1, 3, *size)).shape[1]
    return check_graph(network.description, path, input_dims, is_float,
                       [output_dims[0], channels, *output_dims[2:]])[0]


def torch_model(arch, weights, num_classes):
    """This package's architecture ``arch`` with ``weights`` (a checkpoint, or None: random)."""
    state_dict = read_state_dict(os.fspath(weights)) if weights is not None else None
    if state_dict is not None:
        stored = num_classes_in(state_dict)
        if num_classes is not None and int(num_classes) != stored:
            raise ValueError(f"num_classes={num_classes} but {weights} has {stored} classes")
        num_classes = stored
    model = create_model(arch or "mbv2", 21 if num_classes is None else num_classes)  # names the archs if unknown
    if state_dict is not None:
        load_checkpoint(model, state_dict)
    return model


class exported_onnx:
    """A plan's ``.pth`` (or random) model, fused and exported once (dynamic batch and size) to a
    temporary ONNX file, yielded as (path, description) while a runtime reads it."""

    def __init__(self, plan):
        self.plan = plan

    def __enter__(self):
        from ..description import with_num_classes
        from ..export import ExportWrapper, export_onnx
        arch = self.plan.arch or "mbv2"
        model = torch_model(arch, self.plan.weights, self.plan.num_classes)
        description = with_num_classes(self.plan.description, model.num_classes)
        info = {"arch": arch, "num_classes": model.num_classes, "output_stride": model.output_stride}
        self.folder = tempfile.TemporaryDirectory(prefix="refinenet_ros_")
        path = os.path.join(self.folder.name, f"{arch}.onnx")
        export_onnx(ExportWrapper(fuse_for_inference(model.eval())), path, info, dynamic=True,
                    height=96, width=128)
        return path, description

    def __exit__(self, *exc):
        self.folder.cleanup()
