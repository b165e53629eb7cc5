"""A restart under the same conditions: the node's first start chooses its frames in flight on a
live camera and remembers the choice; the second, with the same cache, should start in it without a
trial. Prints the choice lines of both starts and the second's label age over its first
``--window`` s against the next ``--window`` s (the steady state), as JSON.

    python -m refinenet_ros.tools.benchmark_restart --frames ../shared/data/camvid/val.txt

The camera publishes real frames resized to 640x480 at ``--rate`` from this process, stamped with
the wall clock; label age is the time-weighted age of the newest label on arrival
(:func:`..ros.intake.age.mean_age_ms`).
"""
import argparse
import json
import os
import pathlib
import signal
import sys
import tempfile
import threading
import time

import cv2
import rclpy
import yaml
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from ..engine.frames import read_frames
from ..ros.conversions import numpy_to_image
from ..ros.intake.age import mean_age_ms
from .processes import start_node

SOURCE = str(pathlib.Path(__file__).resolve().parents[2])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", required=True, help="real frames: a folder, list file or video")
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--first", type=float, default=50.0, help="seconds of frames at the first start")
    p.add_argument("--window", type=float, default=30.0)
    p.add_argument("--domain-id", type=int, default=64)
    return p.parse_args(argv)


class Camera:
    def __init__(self, frames, rate):
        self.frames, self.rate, self.events = frames, rate, []  # (arrival, age on arrival s)
        self.node = rclpy.create_node("restart_camera")
        self.node.create_subscription(Image, "/restart/segmentation/labels", self._label, 10)
        self.publisher = self.node.create_publisher(Image, "/restart/image_raw", qos_profile_sensor_data)

    def _label(self, message):
        stamp = message.header.stamp.sec + message.header.stamp.nanosec * 1e-9
        self.events.append((time.monotonic(), time.time() - stamp))

    def publish_for(self, seconds):
        start, k = time.monotonic(), 0
        while time.monotonic() - start < seconds:
            message, now = numpy_to_image(self.frames[k % len(self.frames)], "rgb8"), time.time()
            message.header.stamp.sec, message.header.stamp.nanosec = int(now), int(now % 1 * 1e9)
            self.publisher.publish(message)
            k += 1
            time.sleep(1.0 / self.rate)
        return start


def run(camera, folder, env, seconds):
    node, lines = start_node(SOURCE, [f"{SOURCE}/config/params.yaml", folder / "params.yaml"], env)
    try:
        camera.events.clear()
        start = camera.publish_for(seconds)
    finally:
        os.killpg(node.pid, signal.SIGINT)
        node.wait(60)
    choices = [line.strip() for line in lines if "frames in flight:" in line or "trying the modes" in line]
    return start, list(camera.events), choices


def main(argv=None):
    args = parse_args(argv)
    folder = pathlib.Path(tempfile.mkdtemp(prefix="refinenet_restart_"))
    (folder / "params.yaml").write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "image_topics": ["/restart/image_raw"]}}}))
    env = dict(os.environ, PYTHONPATH=SOURCE, REFINENET_ROS_CACHE=str(folder / "cache"),
               ROS_DOMAIN_ID=str(args.domain_id), ROS_LOG_DIR=str(folder / "log"))
    rclpy.init(domain_id=args.domain_id)
    camera = Camera([cv2.resize(f, (640, 480)) for f in read_frames(args.frames, 30)], args.rate)
    executor = SingleThreadedExecutor()
    executor.add_node(camera.node)
    threading.Thread(target=executor.spin, daemon=True).start()
    try:
        _, _, first = run(camera, folder, env, args.first)
        start, events, second = run(camera, folder, env, 2 * args.window)
    finally:
        executor.shutdown()
        rclpy.shutdown()
    early = mean_age_ms([e for e in events if e[0] - start <= args.window])
    steady = mean_age_ms([e for e in events if e[0] - start > args.window])
    print(json.dumps({"first_start": first, "restart": second, "restart_label_age_ms_first_window": early,
                      "restart_label_age_ms_steady": steady,
                      "ratio": round(early / steady, 3) if early and steady else None}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
