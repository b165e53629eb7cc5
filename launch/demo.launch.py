"""The segmentation node fed by image_source: a video, image folder, rosbag2 or V4L2 camera.

    ros2 launch refinenet_ros demo.launch.py                       # real street footage, looped
    ros2 launch refinenet_ros demo.launch.py source:=~/drive.mcap use_rviz:=true
    ros2 launch refinenet_ros demo.launch.py source:=/dev/video0 device:=cuda

source:=demo (the default) is OpenCV's vtest.avi street video from Debian's opencv-doc package,
fetched once with apt-get download. Frames go to /<camera>/image_raw. Every argument of
segmentation.launch.py is passed through, except image_topics.
"""
import os

from launch.actions import (
    DeclareLaunchArgument,
    IncludeLaunchDescription,
    OpaqueFunction,
)
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription
from refinenet_ros.ros.launch_helpers import (
    SEGMENTATION_ARGUMENTS,
    SOURCE_ARGUMENTS,
    shipped_profile_actions,
)

PASSED_THROUGH = {name: value for name, value in SEGMENTATION_ARGUMENTS.items() if name != "image_topics"}


def image_source(context):
    from refinenet_ros.tools.footage import (
        demo_footage,  # apt-get download, only when asked for
    )

    source = LaunchConfiguration("source").perform(context)
    source = str(demo_footage()) if source == "demo" else os.path.expanduser(source)
    camera = LaunchConfiguration("camera").perform(context)
    return [Node(
        package="refinenet_ros",
        executable="image_source",
        name="image_source",
        namespace=camera,
        parameters=[{
            "source": source,
            "rate": float(LaunchConfiguration("rate").perform(context)),
            "loop": LaunchConfiguration("loop").perform(context).lower() in ("true", "1", "yes"),
            "frame_id": camera,
            "topic": "image_raw",
        }],
        output="screen",
    )]


def generate_launch_description():
    segmentation = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare("refinenet_ros"), "launch", "segmentation.launch.py"])),
        launch_arguments=dict(
            {name: LaunchConfiguration(name) for name in PASSED_THROUGH},
            image_topics=["[/", LaunchConfiguration("camera"), "/image_raw]"],
        ).items(),
    )
    profile = shipped_profile_actions()  # for every process it starts
    arguments = {**SOURCE_ARGUMENTS, **PASSED_THROUGH}
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, (default, description) in arguments.items()]
        + profile + [OpaqueFunction(function=image_source), segmentation]
    )
