"""The segmentation node fed by image_source: a video, image folder, rosbag2 or V4L2 camera.

    ros2 launch refinenet_ros demo.launch.py                       # real street footage, looped
    ros2 launch refinenet_ros demo.launch.py source:=~/drive.mcap use_rviz:=true
    ros2 launch refinenet_ros demo.launch.py source:=/dev/video0 device:=cuda

source:=demo (the default) is OpenCV's vtest.avi street video from Debian's opencv-doc package,
fetched once with apt-get download. Frames go to /<camera>/image_raw.
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from refinenet_ros.footage import demo_footage

SOURCE_ARGUMENTS = {
    "source": ("demo", "video file, image folder, rosbag2, /dev/videoN, or 'demo' (street footage)"),
    "rate": ("0", "Hz; 0 = the source's own timing"),
    "loop": ("true", "replay the file, folder or bag in a loop"),
    "camera": ("camera", "camera namespace: frames go to /<camera>/image_raw"),
}
# Passed through to segmentation.launch.py.
SEGMENTATION_ARGUMENTS = {
    "arch": ("", "encoder (empty = params file)"),
    "weights": ("", "'default' or a .pth / .onnx path (empty = params file)"),
    "device": ("", "auto | cpu | cuda | cuda:N (empty = params file)"),
    "precision": ("", "auto | fp32 | bf16 | fp16 | int8 (empty = params file)"),
    "input_width": ("", "network input width (empty = params file)"),
    "input_height": ("", "network input height (empty = params file)"),
    "use_rviz": ("false", "start RViz"),
}


def image_source(context):
    source = LaunchConfiguration("source").perform(context)
    source = str(demo_footage()) if source == "demo" else os.path.expanduser(source)
    return [
        Node(
            package="refinenet_ros",
            executable="image_source",
            name="image_source",
            namespace=LaunchConfiguration("camera"),
            parameters=[{
                "source": source,
                "rate": float(LaunchConfiguration("rate").perform(context)),
                "loop": LaunchConfiguration("loop").perform(context).lower() in ("true", "1", "yes"),
                "frame_id": LaunchConfiguration("camera").perform(context),
                "topic": "image_raw",
            }],
            output="screen",
        )
    ]


def generate_launch_description():
    segmentation = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare("refinenet_ros"), "launch", "segmentation.launch.py"])),
        launch_arguments=dict(
            {name: LaunchConfiguration(name) for name in SEGMENTATION_ARGUMENTS},
            image_topics=["[/", LaunchConfiguration("camera"), "/image_raw]"],
        ).items(),
    )
    arguments = {**SOURCE_ARGUMENTS, **SEGMENTATION_ARGUMENTS}
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, (default, description) in arguments.items()]
        + [OpaqueFunction(function=image_source), segmentation]
    )
