"""What the launch files compute, kept out of them so it is testable without a launch: the
launch arguments (one table, shared by both launch files and the docs), the node's parameter
overrides, the RViz config for the cameras, optional RViz and the Fast DDS profile.
No torch import: ``ros2 launch`` stays quick.
"""
import copy
import os
import re
import shutil
import tempfile

import yaml

from .outputs import RVIZ_OUTPUTS
from .params import PARAMETERS, check_topics, markdown_cell, sibling_topic

# Launch arguments that set a node parameter (empty = keep the params file's value).
NODE_ARGUMENTS = ("autostart", "image_topics", "transport", "arch", "weights", "model_info", "label_map",
                  "device", "precision", "backend", "input_width", "input_height", "output_resolution",
                  "temporal_filter")
# name: (default, description) of every argument of segmentation.launch.py.
SEGMENTATION_ARGUMENTS = {
    **{name: ("", f"{PARAMETERS[name].description}"
               + (f" ({PARAMETERS[name].constraint()})" if PARAMETERS[name].constraint() else "")
               + "; empty = params_file's value") for name in NODE_ARGUMENTS},
    "namespace": ("", "namespace of the node (and of relative image_topics)"),
    "params_file": ("", "node parameters file (YAML, ros__parameters); empty = the shipped "
                    "config/params.yaml"),
    "use_rviz": ("false", "start RViz2 with colour and overlay displays for every camera "
                 "(skipped with a warning where rviz2 is not installed)"),
    "log_level": ("info", "node log level: debug | info | warn | error"),
    "cpus": ("", "CPUs the node may run on, a taskset list such as 2,3 or 2-3 (inference threads "
             "follow; the other cores stay free for other nodes); empty = all"),
}
# Arguments demo.launch.py adds for image_source (it passes the others to segmentation.launch.py).
SOURCE_ARGUMENTS = {
    "source": ("demo", "video file, image folder, rosbag2, /dev/videoN, or 'demo' (street footage)"),
    "rate": ("0", "Hz; 0 = the source's own timing"),
    "loop": ("true", "replay the file, folder or bag in a loop"),
    "camera": ("camera", "camera namespace: frames go to /<camera>/image_raw"),
}
PROFILE_VARIABLES = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
PROFILE_QOS_VARIABLE = ("RMW_FASTRTPS_USE_QOS_FROM_XML", "1")  # the profile's memory policy applies


def cpu_prefix(cpus):
    """The command prefix that keeps the node on ``cpus`` (the ``cpus`` launch argument), or None
    for all of them; ValueError says what is wrong with the list."""
    cpus = cpus.strip()
    if not cpus:
        return None
    if not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", cpus):
        raise ValueError(f"cpus:={cpus!r}: give CPU numbers and ranges separated by commas, e.g. 2,3 or 2-3")
    available = os.sched_getaffinity(0)
    wanted = set()
    for part in cpus.split(","):
        first, _, last = part.partition("-")
        wanted |= set(range(int(first), int(last or first) + 1))
    if not wanted & available:
        raise ValueError(f"cpus:={cpus}: none of these CPUs is available here (this process may use "
                         f"{', '.join(map(str, sorted(available)))})")
    if shutil.which("taskset") is None:
        raise ValueError("cpus: needs taskset (Debian/Ubuntu package util-linux), which is not on PATH")
    return f"taskset -c {cpus}"


def needs_fastdds_profile(environ=os.environ):
    """True when the user has set no Fast DDS profile: the launch files then use the shipped
    one, whose large shared-memory segment carries VGA frames (without it, 66 of 150 VGA frames
    arrived in a measured run)."""
    return not any(environ.get(name) for name in PROFILE_VARIABLES)


def profile_warning(rmw, environ=os.environ):
    """The node's start-up warning where Fast DDS runs without a profile, else None."""
    if rmw != "rmw_fastrtps_cpp" or not needs_fastdds_profile(environ):
        return None
    return ("Fast DDS runs without a profile: camera frames larger than its default 512 KB "
            "shared-memory segment (VGA rgb8 and up) mostly get lost between processes. Set "
            "FASTRTPS_DEFAULT_PROFILES_FILE to this package's config/fastdds.xml in the camera "
            "driver's shell above all, and the node's (the launch files do it): docs/node.md, "
            "'DDS: lost frames between processes'")


def shipped_profile_actions():
    """Launch actions that select the shipped Fast DDS profile, where the user set none: its
    large shared-memory segment carries VGA frames, and RMW_FASTRTPS_USE_QOS_FROM_XML lets its
    history memory policy apply (buffers sized per message, so one huge frame's are freed)."""
    if not needs_fastdds_profile():
        return []
    from launch.actions import SetEnvironmentVariable
    from launch_ros.substitutions import FindPackageShare
    return [SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE",
                                   [FindPackageShare("refinenet_ros"), "/config/fastdds.xml"]),
            SetEnvironmentVariable(*PROFILE_QOS_VARIABLE)]


def rviz_available():
    """Whether the rviz2 package is installed (ament index)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    try:
        get_package_prefix("rviz2")
    except PackageNotFoundError:
        return False
    return True


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
    problem = check_topics(topics)  # the node's own check (rclpy's topic name rules)
    if problem:
        raise ValueError(f"launch argument {problem}")
    return topics


def node_overrides(arguments):
    """Node parameters from launch-argument strings; empty strings are left to the params file."""
    overrides = {}
    for name in NODE_ARGUMENTS:
        text = str(arguments.get(name, "")).strip()
        if not text:
            continue
        kind = type(PARAMETERS[name].default)
        if kind is list:
            overrides[name] = parse_topic_list(text)
        elif kind is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError(f"launch argument {name} must be true or false, got {text!r}")
            overrides[name] = text.lower() == "true"
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
        for output in RVIZ_OUTPUTS:
            display = copy.deepcopy(image_style)
            display["Name"] = f"{absolute.rstrip('/').rpartition('/')[0] or '/'} {output}"
            display["Topic"]["Value"] = sibling_topic(absolute, f"segmentation/{output}")
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


def launch_arguments_table(arguments):
    """A markdown table of launch arguments (docs/demo.md shows these, checked by a test)."""
    rows = ["| argument | default | meaning |", "|---|---|---|"]
    rows += [f"| `{name}` | {f'`{default}`' if default else 'empty'} | {markdown_cell(description)} |"
             for name, (default, description) in arguments.items()]
    return "\n".join(rows)
