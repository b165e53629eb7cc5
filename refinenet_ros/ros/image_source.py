"""image_source: publish sensor_msgs/Image (+ CameraInfo) from a video, an image folder, a
rosbag2 recording (sqlite3 or mcap) or a V4L2 camera.

    image_source --source street.avi --rate 0 --loop          # the video's own timing, looped
    image_source --source frames/ --rate 5 --frame-id cam0
    image_source --source my_bag/ --bag-topic /cam/image_raw  # bag timing, stamps restamped
    image_source --source /dev/video0                         # or --source 0
    image_source --ros-args -p source:=street.avi -r image_raw:=/cam0/image_raw

Frames go to ``topic`` (default ``image_raw``) and a CameraInfo with the frame size (zeroed
intrinsics: uncalibrated) to the sibling ``camera_info``. Every CLI flag is also a ROS parameter
(``--frame-id`` is ``frame_id``); ``--ros-args -p`` wins over a flag.
"""
import argparse
import posixpath
import sys
import threading
import time

import cv2
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import CameraInfo, Image

from .frame_sources import (
    SourceError,
    image_msg,
    open_frames,
    resize_image_msg,
    source_kind,
)
from .signals import ignore_signals, stop_event

FOLDER_RATE_HZ = 10.0  # an image folder has no timing of its own

# name: (type, default, help). Declared as ROS parameters and offered as --flags.
PARAMETERS = {
    "source": (str, "", "video file, image folder, rosbag2 folder/file, /dev/videoN or camera index"),
    "topic": (str, "image_raw", "image topic; CameraInfo goes to the sibling 'camera_info'"),
    "frame_id": (str, "camera", "header.frame_id of the published messages"),
    "rate": (float, 0.0, "Hz; 0 = the source's own timing (video fps, bag stamps, folder 10 Hz, "
                         "camera as delivered); negative = as fast as possible"),
    "loop": (bool, False, "start again at the end of a file, folder or bag"),
    "max_frames": (int, 0, "stop after this many frames (0 = no limit)"),
    "width": (int, 0, "resize frames to this width (0 = native; cameras: requested capture size)"),
    "height": (int, 0, "resize frames to this height (0 = native)"),
    "bag_topic": (str, "", "image topic to replay from a bag (default: its first image topic)"),
    "restamp": (bool, True, "stamp bag frames with the current time (false: keep recorded stamps)"),
    "wait_for_subscribers": (int, 0, "wait until this many subscribers are matched before starting"),
    "reliable": (bool, False, "reliable QoS instead of best effort (sensor data)"),
}


class ImageSource(Node):
    def __init__(self, defaults=None, stop=None):
        super().__init__("image_source")
        self.stop = stop or threading.Event()  # set by SIGINT/SIGTERM
        defaults = defaults or {}
        for name, (_, default, _) in PARAMETERS.items():
            self.declare_parameter(name, defaults.get(name, default))
        self.params = {name: self.get_parameter(name).value for name in PARAMETERS}
        if not self.params["source"]:
            raise SourceError("no source given: pass --source PATH or -p source:=PATH")
        if (self.params["width"] > 0) != (self.params["height"] > 0):
            raise SourceError("set both width and height (or neither)")
        # Reliable replay keeps a deeper history so a briefly slow subscriber still gets every frame.
        reliable = self.params["reliable"]
        qos = QoSProfile(depth=20 if reliable else 5,
                         reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
        topic = self.params["topic"]
        self.image_pub = self.create_publisher(Image, topic, qos)
        self.info_pub = self.create_publisher(CameraInfo, posixpath.join(posixpath.dirname(topic), "camera_info"), qos)
        self.kind = source_kind(self.params["source"])
        self.published = 0  # in total
        self.played = 0  # in the current pass over the source

    def running(self):
        return not self.stop.is_set() and rclpy.ok()

    def wait_for_subscribers(self):
        wanted = self.params["wait_for_subscribers"]
        if wanted > 0:
            self.get_logger().info(f"waiting for {wanted} subscriber(s) on {self.image_pub.topic_name}")
            while self.running() and self.image_pub.get_subscription_count() < wanted:
                self.stop.wait(0.05)

    def run(self):
        """Publishes frames until the source ends (and loop is off), max_frames or shutdown."""
        p = self.params
        self.get_logger().info(f"publishing {p['source']} on {self.image_pub.topic_name}")
        while self.running():
            frames = open_frames(p["source"], p["bag_topic"], p["width"], p["height"])
            if not self._play(frames):
                return
            if not p["loop"]:
                self.get_logger().info(f"end of {p['source']} after {self.published} frames")
                return

    def _play(self, frames):
        """One pass over a source; False when publishing should stop for good."""
        rate, max_frames = self.params["rate"], self.params["max_frames"]
        start_wall = first_time = None
        self.played = 0
        for frame, source_time in frames:
            if not self.running() or (max_frames and self.published >= max_frames):
                return False
            now = time.monotonic()
            if start_wall is None:
                start_wall, first_time = now, source_time or 0.0
            due = self._due_time(rate, start_wall, source_time, first_time)
            if due > now:
                self.stop.wait(due - now)  # wakes at once on SIGINT/SIGTERM
            self.publish(frame)
        return self.running() and not (max_frames and self.published >= max_frames)

    def _due_time(self, rate, start_wall, source_time, first_time):
        """When (time.monotonic) the next frame of this pass is due."""
        if rate < 0 or (rate == 0 and self.kind == "camera"):
            return 0.0
        if rate > 0 or source_time is None:
            return start_wall + self.played / (rate or FOLDER_RATE_HZ)
        return start_wall + (source_time - first_time)

    def publish(self, frame):
        p = self.params
        if isinstance(frame, Image):
            msg = frame
            if p["width"] and (msg.width, msg.height) != (p["width"], p["height"]):
                msg = resize_image_msg(msg, p["width"], p["height"])
        else:
            if p["width"] and frame.shape[:2] != (p["height"], p["width"]):
                frame = cv2.resize(frame, (p["width"], p["height"]), interpolation=cv2.INTER_AREA)
            msg = image_msg(frame)
        if not isinstance(frame, Image) or p["restamp"]:
            msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = p["frame_id"]
        # Uncalibrated: zero intrinsics (sensor_msgs/CameraInfo's convention), size and header set.
        info = CameraInfo(header=msg.header, height=msg.height, width=msg.width,
                          distortion_model="plumb_bob", d=[0.0] * 5)
        self.image_pub.publish(msg)
        self.info_pub.publish(info)
        self.published += 1
        self.played += 1


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="image_source", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, (kind, default, help_text) in PARAMETERS.items():
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, type=kind, default=None, help=f"{help_text} (default: {default!r})")
    args = parser.parse_args(argv)
    return {name: value for name, value in vars(args).items() if value is not None}


def main(argv=None):
    """Console script ``image_source``; 0 at the end of the source or on SIGINT/SIGTERM (at any
    moment, also twice, as ``ros2 launch`` does to a process group), 2 for a bad source."""
    argv = sys.argv if argv is None else argv
    defaults = parse_args(remove_ros_args(argv)[1:])
    stop = stop_event()  # only ask to stop: no exception mid-cleanup
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    node = spinner = None
    try:
        node = ImageSource(defaults, stop)
        spinner = BackgroundSpinner(node)  # parameter services answer while frames go out
        node.wait_for_subscribers()
        node.run()
    except SourceError as error:
        print(f"image_source: {error}", file=sys.stderr)
        return 2
    except ExternalShutdownException:
        pass
    finally:
        if spinner is not None:
            spinner.stop()  # before the node goes: a wait set on a destroyed node aborts
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        ignore_signals()
    return 0


class BackgroundSpinner:
    """Serves a node's services (parameters) from a daemon thread while the main thread works."""

    def __init__(self, node):
        self._stopping = False
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(node)
        self.thread = threading.Thread(target=self._spin, name="image_source_executor", daemon=True)
        self.thread.start()

    def _spin(self):
        try:
            while self.executor.context.ok() and not self._stopping:
                self.executor.spin_once(timeout_sec=0.1)
        except (ExternalShutdownException, KeyboardInterrupt):
            pass

    def stop(self):
        self._stopping = True
        self.thread.join(timeout=5.0)
        self.executor.shutdown()


if __name__ == "__main__":
    sys.exit(main())
