"""The segmentation node's parameters, one table: each row's default, description, whether it
can change at runtime, its choices or range. The node declares (with descriptor constraints)
and validates from it; config/params.yaml, the README's parameter table and the launch
arguments' descriptions are checked against it by tests. No torch import (launch files use it).
"""
import json
import pathlib
from dataclasses import dataclass

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
)
from rclpy.exceptions import InvalidTopicNameException
from rclpy.validate_topic_name import validate_topic_name

from ..choices import (
    ARCHS,
    BACKENDS,
    OUTPUT_QOS_PROFILES,
    OUTPUT_RESOLUTIONS,
    PRECISIONS,
    QOS_PROFILES,
    TRANSPORTS,
    WAIT_FOR_NEXT_FRAME,
)
from ..engine.hardware.devices import device_name_problem
from ..engine.model.files import file_problem, read_yaml
from .outputs import OUTPUTS, SWITCHES, enabled_outputs

MAX_INPUT_SIZE = 8192


@dataclass(frozen=True)
class Param:
    default: object
    description: str
    runtime: bool = False       # may change while the node runs (ros2 param set)
    choices: tuple = ()         # allowed values, if a closed list
    range: tuple | None = None  # (low, high), inclusive, for numbers

    @property
    def ros_type(self):
        kinds = ((bool, ParameterType.PARAMETER_BOOL), (int, ParameterType.PARAMETER_INTEGER),
                 (float, ParameterType.PARAMETER_DOUBLE), (str, ParameterType.PARAMETER_STRING),
                 (list, ParameterType.PARAMETER_STRING_ARRAY))
        return next(kind for python_type, kind in kinds if isinstance(self.default, python_type))

    def constraint(self):
        """The values it takes, in words ('' when any value of its type will do)."""
        if self.choices:
            return " | ".join(self.choices)
        if self.range:
            return f"{self.range[0]}..{self.range[1]}"
        return ""


PARAMETERS = {
    # --- inputs ---
    "autostart": Param(True, "configure and activate at start; false: stay unconfigured for a "
                       "lifecycle manager (ros2 lifecycle set ... configure / activate)"),
    "image_topics": Param(["/camera/image_raw"], "sensor_msgs/Image topics, one per camera, each in "
                          "its own namespace"),
    "transport": Param("raw", "raw: sensor_msgs/Image on each topic; compressed: CompressedImage "
                       "(jpeg/png) on <topic>/compressed", choices=TRANSPORTS),
    "qos": Param("sensor_data", "subscription QoS: sensor_data (best effort, depth 5, REP-2003) or "
                 "reliable (depth 1)", choices=QOS_PROFILES),
    # --- model ---
    "arch": Param("mbv2", "model architecture", choices=ARCHS),
    "weights": Param("default", "'default' (the shipped CamVid model), a .pth checkpoint or an .onnx model "
                      "(described: model_info)"),
    "num_classes": Param(0, "number of classes; 0 = from the weights", range=(0, 65535)),
    "device": Param("auto", "auto | cpu | cuda | cuda:N | intel_gpu | intel_npu (auto: cuda if "
                    "available, else cpu; Intel GPU/NPU through OpenVINO)"),
    "precision": Param("auto", "auto: int8 where an int8 model exists (the shipped model's, or an int8 "
                       ".onnx given as weights), else fp16 on CUDA and Intel GPU/NPU, else fp32 on a CPU "
                       "(bf16 where measured faster with >= 99% of labels as fp32)",
                       choices=PRECISIONS),
    "backend": Param("auto", "auto: the installed backend measured fastest for this CPU, weights, size "
                     "and precision (cached); PyTorch on CUDA", choices=BACKENDS),
    "cuda_graphs": Param(True, "on CUDA with PyTorch, run each frame shape's whole pipeline as a CUDA "
                         "graph, checked against the eager path on first use (a shape that fails or "
                         "disagrees runs eagerly, logged once)"),
    "model_info": Param("", "model description file (classes, input, output: docs/models.md); '' = "
                        "<weights>.yaml beside the weights, or the model's own"),
    "label_map": Param("", "label map file merging the model's classes into yours (docs/models.md); "
                       "'' = the model's classes"),
    "palette": Param("", "file of RGB colours per class (YAML/JSON list); '' = the model's"),
    "class_names": Param("", "file of class names (YAML/JSON list or one per line); '' = the model's"),
    # --- inference ---
    "input_width": Param(0, "network input width; used when input_width and input_height are > 0 "
                         "(0 = each frame's native size)", runtime=True, range=(0, MAX_INPUT_SIZE)),
    "input_height": Param(0, "network input height (0 = native size)", runtime=True,
                          range=(0, MAX_INPUT_SIZE)),
    "max_input_pixels": Param(1920 * 1080, "largest network input in pixels: bigger frames run "
                              "downscaled (aspect kept; outputs still at output_resolution), and "
                              "input_width x input_height may not exceed it", runtime=True,
                              range=(4096, 8192 * 8192)),
    "output_resolution": Param("input", "outputs at each image's own size or at the network size",
                               runtime=True, choices=OUTPUT_RESOLUTIONS),
    "max_batch_size": Param(4, "most frames (one per camera) per inference batch on CUDA (a CPU runs "
                            "one frame per call: batches only cost there)", runtime=True, range=(1, 64)),
    "batch_timeout_ms": Param(5.0, "longest wait for more cameras once a frame is pending",
                              runtime=True, range=(0.0, 1000.0)),
    "wait_for_next_frame": Param("auto", "a lone frame that has waited 0.4 of its camera's period when "
                                 "the pipeline frees up: always = wait for the camera's next frame and "
                                 "segment that, never = segment it, auto = whichever gives the youngest "
                                 "labels on the live cameras", choices=WAIT_FOR_NEXT_FRAME),
    "frames_in_flight": Param(0, "frames segmented at once: 0 = auto (with OpenVINO on a CPU of 2 or "
                              "more cores, 1 or 2, whichever gives the youngest labels on the live "
                              "cameras; else 1); 1 = the lowest latency per frame; >= 2 for "
                              "throughput (OpenVINO only)", range=(0, 16)),
    # --- outputs ---
    **{parameter: Param(OUTPUTS[name].switch, f"publish <ns>/segmentation/{name} "
                        f"({OUTPUTS[name].content})", runtime=True) for parameter, name in SWITCHES.items()},
    "temporal_filter": Param(True, "filter each camera's labels over time (moved with the image motion; "
                             "a confident new label wins at once, flicker is held): labels, colours, "
                             "confidence, masks and the point cloud hold still (docs/node.md)", runtime=True),
    "overlay_alpha": Param(0.5, "overlay blend: 0 = image only, 1 = colours only", runtime=True,
                           range=(0.0, 1.0)),
    # --- navigation outputs ---
    "depth_topics": Param([""], "registered depth topics, one per image_topics entry ('' = none; "
                          "a single '' = no depth at all): 16UC1 mm or 32FC1 m, aligned with the "
                          "colour image; gives <ns>/segmentation/points"),
    "depth_tolerance_ms": Param(0.0, "pair colour and depth frames whose stamps differ by at most "
                                "this (0 = identical stamps only)", range=(0.0, 1000.0)),
    "depth_min_m": Param(0.1, "depth below this is invalid (NaN point)", runtime=True, range=(0.0, 1000.0)),
    "depth_max_m": Param(20.0, "depth above this is invalid (NaN point)", runtime=True, range=(0.0, 1000.0)),
    "cloud_stride": Param(1, "1: organised cloud, pixel-aligned with the labels (NaN where depth is "
                          "invalid); N > 1: every N-th pixel and row, valid points only (unorganised)",
                          runtime=True, range=(1, 64)),
    "mask_groups": Param([""], "class groups published as mono8 0/255 masks at "
                         "<ns>/segmentation/mask/<group>, e.g. 'drivable: road, pavement' ('' = none)"),
    "output_qos": Param("reliable", "QoS of the outputs: reliable, or best_effort for bandwidth-limited "
                        "links", choices=OUTPUT_QOS_PROFILES),
    "diagnostics_period": Param(1.0, "seconds between /diagnostics reports", range=(0.1, 60.0)),
}


def markdown_cell(text):
    """``text`` for a markdown table cell: no bare '|', and <ns> is no HTML tag."""
    return text.replace("|", "\\|").replace("<", "\\<")


def markdown_table():
    """The README's parameter table, generated from :data:`PARAMETERS`."""
    kinds = {list: "string[]", str: "string", bool: "bool", int: "int", float: "double"}
    rows = ["| Name | Type | Default | Runtime | Values | Meaning |", "|---|---|---|---|---|---|"]
    for name, param in PARAMETERS.items():
        default = json.dumps(param.default)
        rows.append(f"| `{name}` | {kinds[type(param.default)]} | `{default}` | "
                    f"{'yes' if param.runtime else 'no'} | {markdown_cell(param.constraint())} | "
                    f"{markdown_cell(param.description)} |")
    return "\n".join(rows)


@dataclass(frozen=True)
class Settings:
    """The runtime-tunable parameters, swapped as a whole when one changes."""
    input_size: tuple | None  # (h, w) or None = native
    max_input_pixels: int
    output_resolution: str
    max_batch_size: int
    batch_timeout_s: float
    published: frozenset      # the switchable outputs switched on (outputs.SWITCHES)
    overlay_alpha: float
    depth_min_m: float
    depth_max_m: float
    cloud_stride: int
    temporal_filter: bool = True

    @classmethod
    def from_values(cls, values):
        width, height = values["input_width"], values["input_height"]
        return cls(input_size=(height, width) if width > 0 and height > 0 else None,
                   max_input_pixels=values["max_input_pixels"],
                   output_resolution=values["output_resolution"],
                   max_batch_size=values["max_batch_size"],
                   batch_timeout_s=values["batch_timeout_ms"] / 1000.0,
                   published=enabled_outputs(values),
                   overlay_alpha=values["overlay_alpha"], depth_min_m=values["depth_min_m"],
                   depth_max_m=values["depth_max_m"], cloud_stride=values["cloud_stride"],
                   temporal_filter=values["temporal_filter"])


def declare_parameters(node):
    """Declare every parameter with its descriptor; returns {name: value}."""
    for name, param in PARAMETERS.items():
        descriptor = ParameterDescriptor(name=name, type=param.ros_type, description=param.description,
                                         read_only=not param.runtime,
                                         additional_constraints=param.constraint())
        if param.range is not None and param.ros_type == ParameterType.PARAMETER_INTEGER:
            descriptor.integer_range = [IntegerRange(from_value=param.range[0], to_value=param.range[1], step=1)]
        elif param.range is not None:
            descriptor.floating_point_range = [FloatingPointRange(from_value=param.range[0],
                                                                  to_value=param.range[1])]
        node.declare_parameter(name, param.default, descriptor)
    return {name: node.get_parameter(name).value for name in PARAMETERS}


def check_value(name, value):
    """Why ``value`` is invalid for ``name`` beyond its type and range, or None if valid."""
    param = PARAMETERS[name]
    if param.choices and value not in param.choices:
        return f"{name} must be one of {param.choices}, got {value!r}"
    if name == "device" and device_name_problem(value):
        return device_name_problem(value)
    if name == "image_topics":
        return check_topics(value)
    if name in ("weights", "model_info", "label_map", "palette", "class_names") and value not in ("", "default"):
        return file_problem(value, f"{name} file")
    if name == "weights" and value == "":
        return "weights must be 'default' or a checkpoint path"
    return None


def check_topics(topics):
    """Why ``topics`` cannot be the node's image_topics (names, duplicates, namespaces), or None."""
    if not topics or any(not topic.strip() for topic in topics):
        return f"image_topics must be a non-empty list of topic names, got {list(topics)!r}"
    for topic in topics:
        try:
            validate_topic_name(topic)
        except InvalidTopicNameException as exc:  # its message spans lines: keep the reason only
            reason = str(exc).splitlines()[0].removeprefix("Invalid topic name: ")
            return f"image_topics: {topic[:100]!r} is not a valid topic name: {reason}"
    if len(set(topics)) != len(topics):
        return f"image_topics has duplicates: {list(topics)!r}"
    namespaces = [topic_namespace(topic) for topic in topics]
    if len(set(namespaces)) != len(namespaces):
        return (f"image_topics {list(topics)!r} share a namespace, so their outputs "
                f"(<ns>/segmentation/...) would collide; put each camera in its own namespace")
    return None


def check_values(values):
    """Cross-checks of a full parameter set; returns a reason or None."""
    for name, value in values.items():
        reason = check_value(name, value)
        if reason:
            return reason
    depth = [t for t in values["depth_topics"] if t]
    if depth and len(values["depth_topics"]) != len(values["image_topics"]):
        return (f"depth_topics needs one entry per image_topics entry ('' for none): "
                f"{len(values['depth_topics'])} for {len(values['image_topics'])}")
    for topic in depth:
        try:
            validate_topic_name(topic)
        except InvalidTopicNameException:
            return f"depth_topics: {topic[:100]!r} is not a valid topic name"
    return check_input_pixels(values)


def check_input_pixels(values):
    """Why the network input size is refused (more pixels than max_input_pixels), or None."""
    pixels = values["input_width"] * values["input_height"]
    if pixels > values["max_input_pixels"]:
        return (f"input_width x input_height = {values['input_width']} x {values['input_height']} = "
                f"{pixels} pixels exceeds max_input_pixels {values['max_input_pixels']} (memory)")
    return None


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
    loaded = read_yaml(path, f"{what} file")
    if isinstance(loaded, dict) and what in loaded:  # {palette: [...]} / {class_names: [...]}
        loaded = loaded[what]
    if isinstance(loaded, list):
        return loaded
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    lines = [line for line in lines if line]
    if what == "palette":
        try:
            return [[int(v) for v in line.replace(",", " ").split()] for line in lines]
        except ValueError:
            raise ValueError(f"palette file {path}: expected lines of three integers 'r g b'") from None
    return lines
