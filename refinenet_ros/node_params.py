"""The segmentation node's parameters: declarations with descriptors, validation, and the
immutable snapshot of the runtime-tunable ones that the inference thread reads per batch.
config/params.yaml documents the same parameters with their defaults."""
import json
import pathlib
from dataclasses import dataclass

import yaml
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType)

from .engine import BACKENDS
from .models import available_archs
from .precision import PRECISION_NAMES as PRECISIONS

QOS_CHOICES = ("sensor_data", "reliable")
OUTPUT_RESOLUTIONS = ("input", "network")
MAX_INPUT_SIZE = 8192

_INT, _DOUBLE, _BOOL = ParameterType.PARAMETER_INTEGER, ParameterType.PARAMETER_DOUBLE, ParameterType.PARAMETER_BOOL
_STRING, _STRINGS = ParameterType.PARAMETER_STRING, ParameterType.PARAMETER_STRING_ARRAY

# name: (default, type, description, read_only, range)
PARAMETERS = {
    "image_topics": (["/camera/image_raw"], _STRINGS, "sensor_msgs/Image topics, one per camera", True, None),
    "qos": ("sensor_data", _STRING, f"subscription QoS: {' | '.join(QOS_CHOICES)}", True, None),
    "arch": ("mbv2", _STRING, f"encoder: {' | '.join(available_archs())}", True, None),
    "weights": ("default", _STRING, "'default' (shipped model) or a .pth / .onnx path", True, None),
    "num_classes": (0, _INT, "number of classes; 0 = from the weights", True, (0, 65535)),
    "device": ("auto", _STRING, "auto | cpu | cuda | cuda:N", True, None),
    "precision": ("auto", _STRING, f"{' | '.join(PRECISIONS)}", True, None),
    "backend": ("auto", _STRING, "auto | torch | onnxruntime (auto: ONNX Runtime for fp32/int8 on a CPU, "
                "PyTorch otherwise)", True, None),
    "palette": ("", _STRING, "file of RGB colours per class (YAML/JSON list); '' = the model's", True, None),
    "class_names": ("", _STRING, "file of class names (YAML/JSON list or one per line); '' = the model's",
                    True, None),
    "input_width": (0, _INT, "network input width; used when input_width and input_height are > 0",
                    False, (0, MAX_INPUT_SIZE)),
    "input_height": (0, _INT, "network input height; 0 = native frame size", False, (0, MAX_INPUT_SIZE)),
    "output_resolution": ("input", _STRING, "outputs at the 'input' image size or the 'network' size",
                          False, None),
    "max_batch_size": (4, _INT, "most frames (from different cameras) per inference batch", False, (1, 64)),
    "batch_timeout_ms": (5.0, _DOUBLE, "longest wait for more cameras once a frame is pending", False,
                         (0.0, 1000.0)),
    "publish_color": (True, _BOOL, "publish <ns>/segmentation/color (rgb8)", False, None),
    "publish_overlay": (True, _BOOL, "publish <ns>/segmentation/overlay (rgb8 blend)", False, None),
    "publish_confidence": (False, _BOOL, "publish <ns>/segmentation/confidence (mono8 0-255)", False, None),
    "overlay_alpha": (0.5, _DOUBLE, "overlay blend: 0 = image only, 1 = colours only", False, (0.0, 1.0)),
    "diagnostics_period": (1.0, _DOUBLE, "period of the /diagnostics status in seconds", True, (0.1, 60.0)),
}


@dataclass(frozen=True)
class Settings:
    """The runtime-tunable parameters, swapped as a whole when one changes."""
    input_size: tuple | None  # (h, w) or None = native
    output_resolution: str
    max_batch_size: int
    batch_timeout_s: float
    publish_color: bool
    publish_overlay: bool
    publish_confidence: bool
    overlay_alpha: float

    @classmethod
    def from_values(cls, values):
        width, height = values["input_width"], values["input_height"]
        return cls(input_size=(height, width) if width > 0 and height > 0 else None,
                   output_resolution=values["output_resolution"],
                   max_batch_size=values["max_batch_size"],
                   batch_timeout_s=values["batch_timeout_ms"] / 1000.0,
                   publish_color=values["publish_color"], publish_overlay=values["publish_overlay"],
                   publish_confidence=values["publish_confidence"],
                   overlay_alpha=values["overlay_alpha"])


def declare_parameters(node):
    """Declare every parameter with its descriptor; returns {name: value}."""
    for name, (default, kind, description, read_only, limits) in PARAMETERS.items():
        descriptor = ParameterDescriptor(name=name, type=kind, description=description, read_only=read_only)
        if limits is not None and kind == _INT:
            descriptor.integer_range = [IntegerRange(from_value=limits[0], to_value=limits[1], step=1)]
        elif limits is not None:
            descriptor.floating_point_range = [FloatingPointRange(from_value=limits[0], to_value=limits[1])]
        node.declare_parameter(name, default, descriptor)
    return {name: node.get_parameter(name).value for name in PARAMETERS}


def check_value(name, value):
    """Why ``value`` is invalid for ``name`` beyond its type and range, or None if valid."""
    if name == "qos" and value not in QOS_CHOICES:
        return f"qos must be one of {QOS_CHOICES}, got {value!r}"
    if name == "arch" and value not in available_archs():
        return f"arch must be one of {available_archs()}, got {value!r}"
    if name == "precision" and value not in PRECISIONS:
        return f"precision must be one of {PRECISIONS}, got {value!r}"
    if name == "backend" and value not in BACKENDS:
        return f"backend must be one of {BACKENDS}, got {value!r}"
    if name == "device" and not (value in ("auto", "cpu", "cuda") or _is_cuda_index(value)):
        return f"device must be auto, cpu, cuda or cuda:N, got {value!r}"
    if name == "output_resolution" and value not in OUTPUT_RESOLUTIONS:
        return f"output_resolution must be one of {OUTPUT_RESOLUTIONS}, got {value!r}"
    if name == "image_topics":
        if not value or any(not topic.strip() for topic in value):
            return f"image_topics must be a non-empty list of topic names, got {list(value)!r}"
        if len(set(value)) != len(value):
            return f"image_topics has duplicates: {list(value)!r}"
        namespaces = [topic_namespace(topic) for topic in value]
        if len(set(namespaces)) != len(namespaces):
            return (f"image_topics {list(value)!r} share a namespace, so their outputs "
                    f"(<ns>/segmentation/...) would collide; put each camera in its own namespace")
    if name in ("weights", "palette", "class_names") and value not in ("", "default"):
        if not pathlib.Path(value).expanduser().is_file():
            return f"{name} file {value!r} does not exist"
    if name == "weights" and value == "":
        return "weights must be 'default' or a checkpoint path"
    return None


def check_values(values):
    """Cross-checks of a full parameter set; returns a reason or None."""
    for name, value in values.items():
        reason = check_value(name, value)
        if reason:
            return reason
    return None


def _is_cuda_index(value):
    prefix, _, index = value.partition(":")
    return prefix == "cuda" and index.isdigit()


def topic_namespace(topic):
    """'/cam/left/image_raw' -> '/cam/left'; 'image' -> '' (relative to the node)."""
    return topic.rstrip("/").rpartition("/")[0] if "/" in topic.rstrip("/") else ""


def sibling_topic(image_topic, name):
    """The topic ``name`` next to ``image_topic`` (e.g. camera_info, segmentation/labels)."""
    namespace = topic_namespace(image_topic)
    if namespace == "" and image_topic.startswith("/"):
        return "/" + name
    return f"{namespace}/{name}" if namespace else name


def read_list_file(path, what):
    """A list from a YAML / JSON file, or lines of a text file (blank lines and # comments
    skipped). Raises ValueError naming the file."""
    path = pathlib.Path(path).expanduser()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read {what} file {path}: {exc}") from exc
    try:
        loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"{what} file {path} is not valid {path.suffix[1:] or 'YAML'}: {exc}") from exc
    if isinstance(loaded, dict) and what in loaded:  # {palette: [...]} / {class_names: [...]}
        loaded = loaded[what]
    if isinstance(loaded, list):
        return loaded
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if what == "palette":
        try:
            return [[int(v) for v in line.replace(",", " ").split()] for line in lines]
        except ValueError:
            raise ValueError(f"palette file {path}: expected lines of three integers 'r g b'") from None
    return lines
