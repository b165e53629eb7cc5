"""Model descriptions: the one reader of what a model is - its classes and colours, the input it
was trained on (colour order, scaling, mean/std, sizes) and the kind of output it gives.

A description comes from, in this order of precedence (later sources fill in, earlier win):

1. ``model_info``: a YAML/JSON file named by the caller (the node's ``model_info`` parameter);
2. a sidecar beside the model file: ``<model>.yaml``, ``.yml`` or ``.json``;
3. the model itself: an export's ONNX metadata (``refinenet-export`` writes it), or, for
   ``"default"``, the shipped model's ``.json``.

This package's own models (``.pth`` checkpoints, its exports) need no file: they take
ImageNet-normalised RGB and give logits. Any other ONNX must be described; the schema and worked
examples are in docs/models.md ("Bring your own model"). Files are read with YAML's safe loader.
"""
import json
import os
from dataclasses import dataclass, field, replace

from ...choices import IMAGENET_MEAN, IMAGENET_STD
from .classes import check_class_count
from .files import read_yaml
from .schema import HELP, REQUIRED, DescriptionError, checked_mapping
from .shipped import DEFAULT_MODEL, model_metadata

SIDECAR_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class InputSpec:
    color_order: str = "rgb"
    scale: float = 255.0            # pixel values are divided by this before mean/std
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    size: tuple | None = None       # (h, w) a static model needs
    size_multiple: int = 1          # dynamic sizes are padded up to a multiple of this

    def padded(self, size):
        """``size`` (h, w) rounded up to ``size_multiple`` (the input is padded, the scores cropped)."""
        m = self.size_multiple
        return tuple(-(-int(v) // m) * m for v in size)

    def kept(self, scores_size, size):
        """(h, w) of the network's ``scores_size`` (h, w) scores that cover a ``size`` input padded
        up to :meth:`padded` (the rest covers the padding and is cropped off)."""
        return tuple(-(-int(s) * int(v) // p) for s, v, p in zip(scores_size, size, self.padded(size)))

    def affine(self):
        """Per-channel (a, b) in the model's channel order: normalised = pixel * a + b."""
        scale = [float(self.scale)] * 3
        a = [1.0 / (s * d) for s, d in zip(scale, self.std)]
        b = [-m / d for m, d in zip(self.mean, self.std)]
        return a, b


@dataclass(frozen=True)
class ModelDescription:
    name: str
    classes: tuple | None = None    # names in output-channel order
    num_classes: int | None = None
    palette: tuple | None = None
    input: InputSpec = InputSpec()
    output: str = "logits"          # one of OUTPUT_KINDS
    licence: str | None = None
    arch: str | None = None         # this package's architecture, where it is one of them
    output_stride: int | None = None
    precision: str | None = None    # an ONNX file's own precision (fp32, fp16, int8)
    input_mode: str = "float_nchw"  # refinenet-export's graph interface
    source: str = "this package's defaults"
    extra: dict = field(default_factory=dict, compare=False)  # the rest of the file (evaluation, ...)

    @property
    def class_names(self):
        return list(self.classes) if self.classes else [f"class_{i}" for i in range(self.num_classes or 0)]

    @property
    def gives_confidence(self):
        return self.output != "labels"


def describe(weights, model_info=None):
    """The :class:`ModelDescription` of ``weights`` ("default", None, a ``.pth`` or ``.onnx``
    path), with ``model_info`` (a file path) taking precedence; raises :class:`DescriptionError`."""
    layers = []  # (mapping, source), highest precedence first
    if model_info:
        layers.append((_read_file(model_info), os.fspath(model_info)))
    path = None if weights is None or weights == "default" else os.fspath(weights)
    if path is not None and not model_info:
        sidecar = sidecar_of(path)
        if sidecar:
            layers.append((_read_file(sidecar), sidecar))
    own_source = None
    if weights == "default":
        meta = model_metadata(DEFAULT_MODEL)
        layers.append((meta, f"the shipped {DEFAULT_MODEL}.json"))
    elif path is not None and path.lower().endswith(".onnx"):
        meta = onnx_metadata(path)
        if meta.get("producer") == "refinenet_ros" or "num_classes" in meta:
            layers.append((_from_export_metadata(meta), f"the ONNX metadata of {path}"))
            own_source = True
    foreign = path is not None and path.lower().endswith(".onnx") and not own_source
    merged = {}
    for mapping, source in reversed(layers):
        merged = _merge(merged, checked_mapping(mapping, source))
    source = " over ".join(source for _, source in layers) or "this package's defaults"
    if foreign:
        _require_complete(merged, path, layers[0][1] if layers else None)
    name = merged.get("name") or (os.path.splitext(os.path.basename(path))[0] if path else DEFAULT_MODEL)
    return _build(merged, name, source)


def sidecar_of(path):
    """The description file beside ``path`` (``model.onnx`` -> ``model.yaml``), or None."""
    stem = os.path.splitext(os.fspath(path))[0]
    return next((stem + s for s in SIDECAR_SUFFIXES if os.path.isfile(stem + s)), None)


def onnx_metadata(path):
    """The metadata_props of an ONNX file, read without a runtime."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ONNX model not found: {path}")
    import onnx
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for a corrupt file
        raise ValueError(f"cannot load ONNX model {path}: {exc}") from exc
    meta = {p.key: p.value for p in model.metadata_props}
    if "precision" not in meta:
        meta["precision"] = _graph_precision(model)
    return meta


def _graph_precision(model):
    """int8 for a quantised (QDQ or QLinear) graph, fp16 for half inputs, else fp32."""
    quantised = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger"}
    if any(node.op_type in quantised for node in model.graph.node):
        return "int8"
    inputs = model.graph.input
    return "fp16" if inputs and inputs[0].type.tensor_type.elem_type == 10 else "fp32"


def _read_file(path):
    loaded = read_yaml(path, "model description", DescriptionError)
    if not isinstance(loaded, dict):
        raise DescriptionError(f"model description {os.fspath(path)}: expected a mapping of fields "
                               f"(name, classes, input, output, ...), got {type(loaded).__name__}")
    return loaded


def _from_export_metadata(meta):
    """refinenet-export's metadata (strings, JSON-encoded lists) as a description mapping."""
    def value(key):
        text = meta[key]
        try:
            return json.loads(text)
        except ValueError:
            return text
    mapping = {key: value(key) for key in meta}
    if "output_mode" in mapping:
        mapping.setdefault("output", mapping.pop("output_mode"))
    mapping.pop("input_size", None)  # the size it was exported at: the graph says whether it is fixed
    return mapping


def _merge(base, over):
    merged = {**base, **over}
    if isinstance(base.get("input"), dict) and isinstance(over.get("input"), dict):
        merged["input"] = {**base["input"], **over["input"]}
    return merged


def _require_complete(mapping, path, description_file):
    missing = [key for key in REQUIRED if _lookup(mapping, key) is None]
    if not missing:
        return
    if description_file is None:
        stem = os.path.splitext(path)[0]
        raise DescriptionError(
            f"{path} is not a refinenet_ros export and has no description: write {stem}.yaml beside it "
            f"(or set model_info) with {', '.join(REQUIRED)} ({HELP})")
    raise DescriptionError(f"model description {description_file} (of {path}) lacks "
                           f"{', '.join(missing)} ({HELP})")


def _lookup(mapping, dotted):
    value = mapping
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _build(mapping, name, source):
    known = {"name", "classes", "num_classes", "palette", "input", "output", "licence", "arch",
             "output_stride", "precision", "input_mode"}
    classes = tuple(mapping["classes"]) if mapping.get("classes") else None
    num_classes = mapping.get("num_classes")
    if classes and num_classes is not None and num_classes != len(classes):
        raise DescriptionError(f"model description {source}: {len(classes)} class names for "
                               f"num_classes {num_classes}")
    palette = mapping.get("palette")
    if palette and classes and len(palette) < len(classes):
        raise DescriptionError(f"model description {source}: {len(palette)} palette colours for "
                               f"{len(classes)} classes")
    return ModelDescription(
        name=str(name), classes=classes, num_classes=len(classes) if classes else num_classes,
        palette=tuple(tuple(c) for c in palette) if palette else None,
        input=InputSpec(**mapping.get("input", {})), output=mapping.get("output", "logits"),
        licence=mapping.get("licence"), arch=mapping.get("arch"),
        output_stride=mapping.get("output_stride"), precision=mapping.get("precision"),
        input_mode=mapping.get("input_mode", "float_nchw"), source=source,
        extra={k: v for k, v in mapping.items() if k not in known})


def with_num_classes(description, num_classes):
    """``description`` for a model found to have ``num_classes`` outputs; refused where its
    class names say otherwise."""
    check_class_count(description.num_classes, num_classes, description.source, "the model",
                      "output channels", DescriptionError)
    return replace(description, num_classes=int(num_classes))


def check_graph(description, path, input_shape, input_is_float, output_shape):
    """(``description`` with its class count, fixed (h, w) or None) of a graph whose input and
    output shapes (dims None where dynamic) were read by a runtime; a contradiction is refused."""
    def fail(what):
        raise DescriptionError(f"{path}: {what} ({description.source})")
    if description.input_mode != "float_nchw" or not input_is_float:
        fail("the graph takes uint8 images; the engine feeds normalised float NCHW (export without "
             "--uint8-input)")
    if len(input_shape) != 4 or input_shape[1] not in (3, None):
        fail(f"input of shape {list(input_shape)}; the engine feeds N x 3 x H x W")
    graph_size = tuple(input_shape[2:]) if all(isinstance(d, int) for d in input_shape[2:]) else None
    size = description.input.size
    if size is not None and graph_size is not None and tuple(size) != graph_size:
        fail(f"the description's input.size {list(size)} but the graph takes {list(graph_size)}")
    if description.output == "labels":
        if not (len(output_shape) == 3 or (len(output_shape) == 4 and output_shape[1] in (1, None))):
            fail(f"output 'labels' but the graph's output has shape {list(output_shape)} (N x H x W)")
        if description.num_classes is None:
            fail("a labels model needs its classes named")
        return description, tuple(size or graph_size) if (size or graph_size) else None
    if len(output_shape) != 4:
        fail(f"output {description.output!r} but the graph's output has shape {list(output_shape)} "
             f"(N x C x h x w)")
    channels = output_shape[1]
    if channels is None and description.num_classes is None:
        fail("cannot tell the number of classes: name them in classes")
    check_class_count(description.num_classes, channels, description.source, f"{path}'s output",
                      "channels", DescriptionError)
    described = replace(description, num_classes=description.num_classes or channels)
    return described, tuple(size or graph_size) if (size or graph_size) else None
