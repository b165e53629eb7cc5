"""Light-Weight RefineNet semantic segmentation for one or more cameras, optionally with RViz.

    ros2 launch refinenet_ros segmentation.launch.py image_topics:=[/cam0/image_raw,/cam1/image_raw]
    ros2 launch refinenet_ros segmentation.launch.py image_topics:=/front/image_raw transport:=compressed
    ros2 launch refinenet_ros segmentation.launch.py image_topics:=/front/image_raw device:=cuda use_rviz:=true
    ros2 launch refinenet_ros segmentation.launch.py autostart:=false   # for a lifecycle manager
    ros2 launch refinenet_ros segmentation.launch.py image_topics:=/front/image_raw cpus:=2,3

For each camera "<ns>/<name>" the node publishes <ns>/segmentation/{labels,color,overlay,...}.
Arguments left empty keep the value of params_file (config/params.yaml by default); the list
with descriptions: `ros2 launch refinenet_ros segmentation.launch.py --show-args`.
"""
from launch.actions import (
    DeclareLaunchArgument,
    LogInfo,
    OpaqueFunction,
)
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription
from refinenet_ros.ros.launch_helpers import (
    SEGMENTATION_ARGUMENTS,
    cpu_prefix,
    node_overrides,
    params_file_value,
    rviz_available,
    shipped_profile_actions,
    write_rviz_config,
)


def share_file(context, folder, name):
    return f"{FindPackageShare('refinenet_ros').perform(context)}/{folder}/{name}"


def launch_setup(context):
    values = {name: LaunchConfiguration(name).perform(context) for name in SEGMENTATION_ARGUMENTS}
    params_file = values["params_file"] or share_file(context, "config", "params.yaml")
    overrides = node_overrides(values)
    actions = [LifecycleNode(  # a managed node: with autostart:=false a lifecycle manager drives it
        package="refinenet_ros",
        executable="segmentation_node",
        name="segmentation_node",
        namespace=values["namespace"],
        parameters=[params_file, overrides],
        ros_arguments=["--log-level", values["log_level"]],
        prefix=cpu_prefix(values["cpus"]),
        output="screen",
        emulate_tty=True,
    )]
    if values["use_rviz"].lower() in ("true", "1", "yes"):
        if rviz_available():  # displays for the cameras actually segmented
            topics = overrides.get("image_topics") or params_file_value(params_file, "image_topics")
            rviz_file = write_rviz_config(share_file(context, "config", "segmentation.rviz"), topics,
                                          values["namespace"])
            actions.append(Node(package="rviz2", executable="rviz2", name="rviz2",
                                arguments=["-d", rviz_file]))
        else:
            actions.append(LogInfo(msg="use_rviz:=true but rviz2 is not installed "
                                       "(apt install ros-jazzy-rviz2): segmenting without RViz"))
    return actions


def generate_launch_description():
    profile = shipped_profile_actions()  # for every process it starts
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, (default, description) in SEGMENTATION_ARGUMENTS.items()]
        + profile + [OpaqueFunction(function=launch_setup)]
    )
