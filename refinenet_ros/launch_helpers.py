"""What the launch files compute, kept out of them so it is testable without launch_ros (which
is not on PyPI): launch-argument parsing, the node's parameter overrides, the RViz config for
the cameras, and the ``--ros-args`` command line launch_ros builds for a Node. No ROS imports.
"""
import copy
import pathlib
import tempfile

import yaml

# Launch arguments of segmentation.launch.py that become node parameters: name -> type.
# An empty value means "keep the params file's value".
NODE_ARGUMENTS = {"image_topics": list, "arch": str, "weights": str, "device": str,
                  "precision": str, "input_width": int, "input_height": int}
OUTPUTS = ("color", "overlay")  # shown in RViz for each camera


def parse_topic_list(text):
    """Topics from a launch argument: "[/cam0/image_raw,/cam1/image_raw]", "['/a', '/b']",
    "/a,/b" or "/a /b" -> ["/a", "/b"]. Raises ValueError on an empty or malformed list."""
    stripped = text.strip()
    if stripped.startswith("[") != stripped.endswith("]"):
        raise ValueError(f"image_topics {text!r}: unbalanced brackets")
    stripped = stripped.strip("[]")
    topics = [t.strip().strip("'\"").strip() for t in stripped.replace(",", " ").split()]
    topics = [t for t in topics if t]
    if not topics:
        raise ValueError(f"image_topics {text!r} names no topic; e.g. image_topics:=[/cam0/image_raw,/cam1/image_raw]")
    bad = [t for t in topics if not all(c.isalnum() or c in "/_~{}" for c in t) or "//" in t]
    if bad:
        raise ValueError(f"image_topics {text!r}: invalid topic name(s) {bad}")
    return topics


def node_overrides(arguments):
    """Node parameters from launch-argument strings; empty strings are left to the params file."""
    overrides = {}
    for name, kind in NODE_ARGUMENTS.items():
        text = str(arguments.get(name, "")).strip()
        if not text:
            continue
        if kind is list:
            overrides[name] = parse_topic_list(text)
        elif kind is int:
            try:
                overrides[name] = int(text)
            except ValueError:
                raise ValueError(f"launch argument {name} must be an integer, got {text!r}") from None
        else:
            overrides[name] = text
    return overrides


def params_file_value(params_file, name):
    """A parameter's value in a ROS 2 params file (any node key, e.g. "/**"), or None."""
    with open(params_file) as f:
        content = yaml.safe_load(f) or {}
    for section in content.values():
        params = (section or {}).get("ros__parameters", {})
        if name in params:
            return params[name]
    return None


def resolve_topic(topic, namespace=""):
    """The absolute name of ``topic`` for a node in ``namespace`` ('~' is not supported)."""
    if topic.startswith("/"):
        return topic
    return "/" + "/".join(part for part in (namespace.strip("/"), topic) if part)


def output_topic(image_topic, output):
    """'/cam0/image_raw' -> '/cam0/segmentation/<output>' (the node's naming)."""
    namespace = image_topic.rstrip("/").rpartition("/")[0]
    return f"{namespace}/segmentation/{output}"


def rviz_config(template_path, image_topics, namespace=""):
    """The RViz2 config of ``template_path`` with one Image display per camera and output
    (colour, overlay); the template's first Image display gives the style."""
    with open(template_path) as f:
        config = yaml.safe_load(f)
    displays = config["Visualization Manager"]["Displays"]
    image_style = next(d for d in displays if d["Class"] == "rviz_default_plugins/Image")
    others = [d for d in displays if d["Class"] != "rviz_default_plugins/Image"]
    images = []
    for image_topic in image_topics:
        absolute = resolve_topic(image_topic, namespace)
        for output in OUTPUTS:
            display = copy.deepcopy(image_style)
            display["Name"] = f"{absolute.rstrip('/').rpartition('/')[0] or '/'} {output}"
            display["Topic"]["Value"] = output_topic(absolute, output)
            images.append(display)
    config["Visualization Manager"]["Displays"] = others + images
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def write_rviz_config(template_path, image_topics, namespace=""):
    """Writes rviz_config(...) to a temporary file and returns its path."""
    with tempfile.NamedTemporaryFile("w", prefix="refinenet_ros_", suffix=".rviz", delete=False) as f:
        f.write(rviz_config(template_path, image_topics, namespace))
    return f.name


def ros_arguments(params_files=(), overrides=None, namespace="", name="", remappings=(), overrides_file=None):
    """The ``--ros-args`` a launch_ros Node passes its executable: parameter files in order, then
    overrides (launch_ros writes dicts to a temporary params file too; ``overrides_file`` names
    it instead), names and remappings."""
    args = ["--ros-args"]
    if name:
        args += ["-r", f"__node:={name}"]
    if namespace:
        args += ["-r", f"__ns:=/{namespace.strip('/')}"]
    files = [str(p) for p in params_files]
    if overrides:
        if overrides_file is None:
            with tempfile.NamedTemporaryFile(prefix="launch_params_", suffix=".yaml", delete=False) as f:
                overrides_file = f.name
        with open(overrides_file, "w") as f:
            yaml.safe_dump({"/**": {"ros__parameters": overrides}}, f)
        files.append(str(overrides_file))
    for path in files:
        args += ["--params-file", path]
    for source, target in remappings:
        args += ["-r", f"{source}:={target}"]
    return args


def share_path(*parts):
    """A file of this package's share folder (installed, or the source checkout)."""
    from .paths import share_dir

    return pathlib.Path(share_dir(), *parts)
