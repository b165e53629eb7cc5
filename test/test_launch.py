"""The launch files: a static check that runs everywhere (launch_ros is not on PyPI), the same
nodes started as real processes with the launch files' params file, overrides and namespaces,
and a launch_ros check where it is installed. Plus the RViz config."""
import ast

import numpy as np
import pytest
import yaml

from refinenet_ros import launch_helpers

LAUNCH_FILES = ("segmentation.launch.py", "demo.launch.py")
SEGMENTATION_ARGUMENTS = {"image_topics", "arch", "weights", "device", "precision", "input_width",
                          "input_height", "params_file", "namespace", "use_rviz"}
EXTERNAL_EXECUTABLES = {("rviz2", "rviz2")}


def calls(tree, name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def keyword(call, name):
    return next((k.value for k in call.keywords if k.arg == name), None)


def literal_dict(tree, name):
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def declared_arguments(tree):
    names = set()
    for call in calls(tree, "DeclareLaunchArgument"):
        if isinstance(call.args[0], ast.Constant):
            names.add(call.args[0].value)
        else:  # comprehension over an ARGUMENTS-style dict
            for dict_name in ("ARGUMENTS", "SOURCE_ARGUMENTS", "SEGMENTATION_ARGUMENTS"):
                names |= set(literal_dict(tree, dict_name))
    return names


def share_files(tree):
    """(folder, file) of every PathJoinSubstitution([FindPackageShare(...), folder, file])."""
    found = []
    for call in calls(tree, "PathJoinSubstitution"):
        parts = [e.value for e in call.args[0].elts if isinstance(e, ast.Constant)]
        found.append(tuple(parts))
    return found


@pytest.fixture(scope="module")
def launch_trees(repo_root):
    return {name: ast.parse((repo_root / "launch" / name).read_text()) for name in LAUNCH_FILES}


def test_launch_files_statically(repo_root, launch_trees, console_scripts):
    for name, tree in launch_trees.items():
        assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
        nodes = calls(tree, "Node")
        assert nodes, f"{name} starts no Node"
        for node in nodes:
            package, executable = (keyword(node, k).value for k in ("package", "executable"))
            if package == "refinenet_ros":
                assert executable in console_scripts, f"{name}: {executable} is not a console script"
            else:
                assert (package, executable) in EXTERNAL_EXECUTABLES, f"{name}: unexpected {package}/{executable}"
        for parts in share_files(tree):
            assert (repo_root.joinpath(*parts)).is_file(), f"{name} names {'/'.join(parts)}, which does not exist"
        declared = declared_arguments(tree)
        for call in calls(tree, "LaunchConfiguration"):
            argument = call.args[0]
            if isinstance(argument, ast.Constant):
                assert argument.value in declared, f"{name} uses undeclared argument {argument.value}"
        for node in ast.walk(tree):  # helpers the launch file imports from this package exist
            if isinstance(node, ast.ImportFrom) and node.module.startswith("refinenet_ros"):
                module = __import__(node.module, fromlist=["_"])
                assert all(hasattr(module, alias.name) for alias in node.names), node.module
    assert SEGMENTATION_ARGUMENTS <= declared_arguments(launch_trees["segmentation.launch.py"])
    assert ("launch", "segmentation.launch.py") in share_files(launch_trees["demo.launch.py"])
    assert ("config", "params.yaml") in share_files(launch_trees["segmentation.launch.py"])
    # demo.launch.py passes every segmentation argument it declares through to the include
    demo = literal_dict(launch_trees["demo.launch.py"], "SEGMENTATION_ARGUMENTS")
    assert set(demo) <= SEGMENTATION_ARGUMENTS


def test_topic_list_argument_forms():
    expected = ["/cam0/image_raw", "/cam1/image_raw"]
    for text in ("[/cam0/image_raw,/cam1/image_raw]", "/cam0/image_raw,/cam1/image_raw",
                 "['/cam0/image_raw', '/cam1/image_raw']", " /cam0/image_raw /cam1/image_raw "):
        assert launch_helpers.parse_topic_list(text) == expected
    for bad in ("", "[]", "[/a", "/a b$"):
        with pytest.raises(ValueError, match="image_topics"):
            launch_helpers.parse_topic_list(bad)
    overrides = launch_helpers.node_overrides({"image_topics": "/a/image", "input_width": "480",
                                               "input_height": "", "device": "cpu"})
    assert overrides == {"image_topics": ["/a/image"], "input_width": 480, "device": "cpu"}
    with pytest.raises(ValueError, match="input_width"):
        launch_helpers.node_overrides({"input_width": "wide"})


def test_rviz_config_shows_colour_and_overlay_of_each_camera(repo_root):
    template = repo_root / "config" / "segmentation.rviz"
    shipped = yaml.safe_load(template.read_text())
    default_topics = launch_helpers.params_file_value(repo_root / "config" / "params.yaml", "image_topics")

    def image_topics(config):
        return [d["Topic"]["Value"] for d in config["Visualization Manager"]["Displays"]
                if d["Class"] == "rviz_default_plugins/Image"]

    # the shipped file matches the params file's default cameras
    assert image_topics(shipped) == [launch_helpers.output_topic(t, o) for t in default_topics for o in ("color", "overlay")]
    generated = yaml.safe_load(launch_helpers.rviz_config(template, ["/cam0/image_raw", "image_raw"], "robot"))
    assert image_topics(generated) == ["/cam0/segmentation/color", "/cam0/segmentation/overlay",
                                       "/robot/segmentation/color", "/robot/segmentation/overlay"]
    assert generated["Panels"] == shipped["Panels"] and generated["Window Geometry"] == shipped["Window Geometry"]


def image_source_parameter_names(tree):
    """Keys of the parameters dict demo.launch.py gives its image_source Node."""
    node, = [n for n in calls(tree, "Node") if keyword(n, "executable").value == "image_source"]
    params, = keyword(node, "parameters").elts
    return {key.value for key in params.keys}


def test_launch_nodes_as_processes(repo_root, launch_trees, tmp_path, ros_processes, topic_recorder):
    """segmentation.launch.py's node and demo.launch.py's image_source (two cameras with
    different frame sizes, the multi-camera example), started with the command lines launch_ros
    builds from the launch files' params file, overrides and namespaces."""
    import cv2
    import torch
    from sensor_msgs.msg import Image

    from refinenet_ros.models import create_model

    torch.manual_seed(0)
    weights = tmp_path / "tiny.pth"
    torch.save(create_model("mbv2", 4).state_dict(), weights)
    cameras = {"cam": (64, 96), "cam2": (48, 80)}
    for camera, size in cameras.items():
        (tmp_path / camera).mkdir()
        for i in range(3):
            image = np.random.default_rng(i).integers(0, 255, (*size, 3), np.uint8)
            cv2.imwrite(str(tmp_path / camera / f"{i}.png"), image)

    (folder, params_name), = [p for p in share_files(launch_trees["segmentation.launch.py"]) if p[1].endswith(".yaml")]
    overrides = launch_helpers.node_overrides({"image_topics": "[/cam/image_raw,/cam2/image_raw]", "device": "cpu",
                                               "weights": str(weights), "arch": "mbv2", "input_width": ""})
    segmentation_args = launch_helpers.ros_arguments([repo_root / folder / params_name], overrides,
                                                     name="segmentation_node")
    domain_id = 52
    recorder = topic_recorder(domain_id)
    for camera in cameras:
        for output in ("labels", "color", "overlay"):
            recorder.record(Image, f"/{camera}/segmentation/{output}")
    processes = [ros_processes("segmentation_node", segmentation_args, domain_id)]
    for camera in cameras:
        source_params = {"source": str(tmp_path / camera), "rate": 5.0, "loop": True, "frame_id": camera,
                         "topic": "image_raw"}
        assert set(source_params) == image_source_parameter_names(launch_trees["demo.launch.py"])
        processes.append(ros_processes("image_source", launch_helpers.ros_arguments(
            overrides=source_params, namespace=camera, name="image_source"), domain_id))

    for camera, (height, width) in cameras.items():
        labels = recorder.wait_for(f"/{camera}/segmentation/labels", 2, 240, processes)  # slow only when loaded
        colors = recorder.wait_for(f"/{camera}/segmentation/color", 2, 10)
        overlays = recorder.wait_for(f"/{camera}/segmentation/overlay", 2, 10)
        assert len(labels) >= 2 and colors and overlays, f"no segmentation output arrived for {camera}"
        label = np.frombuffer(labels[0].data, np.uint8).reshape(height, width)
        assert labels[0].encoding == "mono8" and label.max() < 4
        assert (colors[0].height, colors[0].width, colors[0].encoding) == (height, width, "rgb8")
        assert overlays[0].header.frame_id == camera


def test_launch_descriptions_with_launch_ros(repo_root):
    pytest.importorskip("launch_ros")
    import importlib.util

    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    spec = importlib.util.spec_from_file_location("segmentation_launch", repo_root / "launch" / "segmentation.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    arguments = {e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert SEGMENTATION_ARGUMENTS <= arguments
    context = LaunchContext()
    for name in arguments:
        context.launch_configurations[name] = ""
    context.launch_configurations.update(image_topics="[/a/image_raw,/b/image_raw]", use_rviz="false",
                                         params_file=str(repo_root / "config" / "params.yaml"))
    opaque, = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    actions = opaque.execute(context)
    assert [a.node_executable for a in actions] == ["segmentation_node", "rviz2"]
