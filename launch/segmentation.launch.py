"""Light-Weight RefineNet semantic segmentation for one or more cameras, optionally with RViz.

    ros2 launch refinenet_ros segmentation.launch.py image_topics:=[/cam0/image_raw,/cam1/image_raw]
    ros2 launch refinenet_ros segmentation.launch.py image_topics:=/front/image_raw device:=cpu use_rviz:=true

For each camera "<ns>/<name>" the node publishes <ns>/segmentation/{labels,color,overlay,...}.
Arguments left empty keep the value of params_file (config/params.yaml by default).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from refinenet_ros.launch_helpers import node_overrides, params_file_value, write_rviz_config

ARGUMENTS = {
    "image_topics": ("", "camera topics: [/cam0/image_raw,/cam1/image_raw] or /cam0/image_raw,/cam1/image_raw"),
    "arch": ("", "encoder: mbv2 | rf_lw50 | rf_lw101 | rf_lw152"),
    "weights": ("", "'default' (the shipped CamVid model) or a .pth / .onnx path"),
    "device": ("", "auto | cpu | cuda | cuda:N"),
    "precision": ("", "auto | fp32 | bf16 | fp16 | int8"),
    "input_width": ("", "network input width in pixels (0 = native frame size)"),
    "input_height": ("", "network input height in pixels (0 = native frame size)"),
    "namespace": ("", "namespace of the node (and of relative image_topics)"),
    "use_rviz": ("false", "start RViz with colour and overlay displays for every camera"),
}


def launch_setup(context):
    values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    params_file = LaunchConfiguration("params_file").perform(context)
    overrides = node_overrides(values)
    use_rviz = IfCondition(LaunchConfiguration("use_rviz"))
    rviz_file = PathJoinSubstitution([FindPackageShare("refinenet_ros"), "config", "segmentation.rviz"]).perform(context)
    if use_rviz.evaluate(context):  # displays for the cameras actually segmented
        topics = overrides.get("image_topics") or params_file_value(params_file, "image_topics")
        rviz_file = write_rviz_config(rviz_file, topics, values["namespace"])
    return [
        Node(
            package="refinenet_ros",
            executable="segmentation_node",
            name="segmentation_node",
            namespace=values["namespace"],
            parameters=[params_file, overrides],
            output="screen",
            emulate_tty=True,
        ),
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            arguments=["-d", rviz_file],
            condition=use_rviz,
        ),
    ]


def generate_launch_description():
    params_file = PathJoinSubstitution([FindPackageShare("refinenet_ros"), "config", "params.yaml"])
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, (default, description) in ARGUMENTS.items()]
        + [DeclareLaunchArgument("params_file", default_value=params_file,
                                 description="node parameters file (YAML, ros__parameters)"),
           OpaqueFunction(function=launch_setup)]
    )
