"""ONNX (opset >= 17) and TorchScript export of a fused model: what the ONNX Runtime and
OpenVINO backends run for this package's ``.pth`` models, and what ``refinenet-export`` and int8
quantisation (:mod:`refinenet_ros.training.quantize`) write.

The exported graph is the fused inference model (BatchNorm folded, 1x1 pairs merged), by
default with the same interface as :func:`refinenet_ros.models.create_model`: normalised float
NCHW RGB in, logits at ``output_stride`` out. Options bake in uint8 input (normalisation inside
the graph), fp16 weights and an argmax label output at input resolution. The batch is dynamic
unless ``batch`` fixes it; ``dynamic`` makes height and width dynamic too.

Export uses the TorchScript-based exporter (``dynamo=False``): the torch.export-based one
needs onnxscript, which this package does not depend on, and the traced graph is already
what TensorRT wants (plain Conv/Clip/MaxPool/Add and Resize with
``coordinate_transformation_mode=align_corners``).
"""
import contextlib
import copy
import json
import os
import tempfile
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CheckpointError,
    create_model,
    fuse_for_inference,
    load_checkpoint,
    num_classes_in,
    read_state_dict,
)
from ..hardware.precision import TORCH_PRECISIONS, torch_dtype
from ..model.classes import label_dtype
from ..model.shipped import resolve_weights

INPUT_MODES = ("float_nchw", "uint8_nhwc", "uint8_nchw")
OUTPUT_MODES = ("logits", "labels")
MIN_OPSET = 17
MIN_LABEL_AGREEMENT = 0.99  # below this the parity check fails (fp32 exports reach 100%)
DEFAULT_SIZE = (480, 640)
PRECISION_OF_DTYPE = {torch_dtype(name): name for name in TORCH_PRECISIONS}


class ExportWrapper(nn.Module):
    """The fused model with the chosen graph interface around it.

    ``input_mode`` "uint8_nhwc"/"uint8_nchw" take 0-255 RGB and normalise inside the graph;
    ``output_mode`` "labels" upsamples the logits to the input size (bilinear, as in training
    and evaluation) and returns the argmax as uint8 (uint16 above 255 classes). A ``dtype``
    other than float32 runs a cast copy of the model; inputs and logits stay float32.
    """

    def __init__(self, model, input_mode="float_nchw", output_mode="logits", dtype=torch.float32):
        super().__init__()
        if input_mode not in INPUT_MODES:
            raise ValueError(f"input_mode must be one of {INPUT_MODES}, got {input_mode!r}")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {output_mode!r}")
        self.model = model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)
        self.input_mode, self.output_mode, self.dtype = input_mode, output_mode, dtype
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255)
        self.label_dtype = getattr(torch, label_dtype(model.num_classes).__name__)

    def forward(self, x):
        if self.input_mode == "uint8_nhwc":
            x = x.permute(0, 3, 1, 2)
        if self.input_mode != "float_nchw":
            x = (x.float() - self.mean) / self.std
        if self.dtype != torch.float32:
            x = x.to(self.dtype)
        logits = self.model(x).float()
        if self.output_mode == "logits":
            return logits
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits.argmax(1).to(self.label_dtype)


def load_fused_model(arch, weights):
    """(fused fp32 model, metadata dict) for ``weights``: a path or "default" (the shipped model)."""
    weights, arch, meta = resolve_weights(weights, arch)
    if arch is None:
        raise ValueError("--arch is required unless --weights default")
    model = torch_model(arch, weights).eval()
    info = {"arch": arch, "num_classes": model.num_classes, "output_stride": model.output_stride}
    for key in ("classes", "palette", "input_size"):
        if key in meta:
            info[key] = meta[key]
    return fuse_for_inference(model), info


def example_input(input_mode, batch, height, width, seed=0):
    """A reproducible random image batch in the graph's input format."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 3, height, width), generator=gen, dtype=torch.uint8)
    if input_mode == "uint8_nchw":
        return images
    if input_mode == "uint8_nhwc":
        return images.permute(0, 2, 3, 1).contiguous()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    return (images.float() - mean) / std


@contextlib.contextmanager
def _quiet_tracing():
    """Silence the exporter's deprecation notices and the tracer's note on ``upsample_to``'s
    shape test: the trace keeps its resize branch, and resizing to the same size is the
    identity, so the traced graph is exact at every input size."""
    with warnings.catch_warnings():
        for category in (torch.jit.TracerWarning, DeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category)
        yield


def export_onnx(wrapper, path, info, *, batch=None, height=DEFAULT_SIZE[0], width=DEFAULT_SIZE[1],
                dynamic=False, opset=MIN_OPSET):
    """Write ``wrapper`` to ``path`` as ONNX. ``batch=None`` makes the batch dimension dynamic;
    ``dynamic`` also height and width. ``info`` goes into the model's metadata_props."""
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET} (got {opset})")
    if min(height, width) < 64:
        raise ValueError(f"export size must be at least 64x64 (got {height}x{width})")
    import onnx
    wrapper = wrapper.eval()
    example = example_input(wrapper.input_mode, batch or 2, height, width)
    output_name = wrapper.output_mode
    spatial = (1, 2) if wrapper.input_mode == "uint8_nhwc" else (2, 3)
    input_axes = {0: "batch"} if batch is None else {}
    if dynamic:
        input_axes.update({spatial[0]: "height", spatial[1]: "width"})
    output_shape = _output_shape(wrapper, batch, height, width, dynamic)
    output_axes = {i: d for i, d in enumerate(output_shape) if isinstance(d, str)}
    with _quiet_tracing(), torch.no_grad():
        torch.onnx.export(wrapper, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=[output_name],
                          dynamic_axes={"input": input_axes, output_name: output_axes},
                          do_constant_folding=True)
    proto = onnx.load(str(path))
    _drop_identities(proto.graph)
    # The tracer names derived dims after internal nodes ("Castlogits_dim_2"); state them.
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    del dims[:]
    for size in output_shape:
        dim = dims.add()
        if isinstance(size, str):
            dim.dim_param = size
        else:
            dim.dim_value = size
    metadata = {**info, "input_mode": wrapper.input_mode, "output_mode": output_name,
                "precision": PRECISION_OF_DTYPE[wrapper.dtype], "producer": "refinenet_ros"}
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def _drop_identities(graph):
    """Bypass the exporter's Identity nodes (left where BatchNorm was folded away)."""
    outputs = {o.name for o in graph.output}
    rename = {}
    for node in [n for n in graph.node if n.op_type == "Identity" and n.output[0] not in outputs]:
        rename[node.output[0]] = rename.get(node.input[0], node.input[0])
        graph.node.remove(node)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]


def _output_shape(wrapper, batch, height, width, dynamic):
    """Output dims, str for dynamic ones: labels (N, H, W) or logits (N, K, ceil(H/s), ceil(W/s))."""
    n = "batch" if batch is None else batch
    if wrapper.output_mode == "labels":
        return [n, "height", "width"] if dynamic else [n, height, width]
    stride = wrapper.model.output_stride
    spatial = ["out_height", "out_width"] if dynamic else [-(-height // stride), -(-width // stride)]
    return [n, wrapper.model.num_classes, *spatial]


def export_torchscript(wrapper, path, info, *, batch=None, height=DEFAULT_SIZE[0], width=DEFAULT_SIZE[1]):
    """Trace ``wrapper`` and save it with the metadata as ``metadata.json`` extra file."""
    example = example_input(wrapper.input_mode, batch or 2, height, width)
    with _quiet_tracing(), torch.no_grad():
        traced = torch.jit.trace(wrapper.eval(), (example,), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={"metadata.json": json.dumps(
            {**info, "input_mode": wrapper.input_mode, "output_mode": wrapper.output_mode})})
    return traced


def describe_graph(path):
    """{"inputs": [...], "outputs": [...]} with name, dtype and shape (str for dynamic dims)."""
    import onnx
    graph = onnx.load(str(path), load_external_data=False).graph

    def entry(value):
        tensor = value.type.tensor_type
        dims = [d.dim_param or d.dim_value for d in tensor.shape.dim]
        return {"name": value.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
                "shape": dims}
    return {"inputs": [entry(v) for v in graph.input], "outputs": [entry(v) for v in graph.output]}


def torch_model(arch, weights, num_classes=None):
    """This package's architecture ``arch`` with ``weights`` (a checkpoint path; None: random,
    with ``num_classes`` classes, 21 unless given). The one builder of a model from weights."""
    if weights is None:
        return create_model(arch or "mbv2", 21 if num_classes is None else num_classes)
    weights = os.fspath(weights)
    state_dict = read_state_dict(weights)  # CheckpointError names the file when missing or corrupt
    model = create_model(arch or "mbv2", num_classes_in(state_dict))  # names the archs if unknown
    try:
        return load_checkpoint(model, state_dict)
    except CheckpointError as exc:
        raise CheckpointError(f"{weights} (arch {arch or 'mbv2'}): {exc}") from exc


class exported_onnx:
    """A plan's ``.pth`` (or random) model, fused and exported once (dynamic batch and size) to a
    temporary ONNX file, yielded as (path, description) while a runtime reads it."""

    def __init__(self, plan):
        self.plan = plan

    def __enter__(self):
        from ..model.description import with_num_classes
        model = torch_model(self.plan.arch, self.plan.weights, self.plan.num_classes)
        description = with_num_classes(self.plan.description, model.num_classes)
        arch = self.plan.arch or "mbv2"
        info = {"arch": arch, "num_classes": model.num_classes, "output_stride": model.output_stride}
        self.folder = tempfile.TemporaryDirectory(prefix="refinenet_ros_")
        path = os.path.join(self.folder.name, f"{arch}.onnx")
        export_onnx(ExportWrapper(fuse_for_inference(model.eval())), path, info, dynamic=True, height=96,
                    width=128)
        return path, description

    def __exit__(self, *exc):
        self.folder.cleanup()
