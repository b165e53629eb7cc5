"""The node process's resident memory with its CPU defaults, before its first frame and serving a
VGA camera, whether it loaded torch, and the labels of one frame; for this checkout and, with
``--compare-source``, another (each node with a fresh cache of backend decisions, one at a time).

    python -m refinenet_ros.tools.benchmark_node_memory --frames ../shared/data/camvid/val.txt \\
        --serve 45 [--compare-source <checkout>] [--param backend=openvino ...]

A camera of real frames (resized to 640x480) publishes at ``--rate`` from this process; the node
is ``python -m refinenet_ros.ros.node`` with the checkout's ``config/params.yaml``. RSS is VmRSS
from /proc, 3 s after the node is active and after ``--serve`` seconds of frames; torch is
"loaded" where libtorch is mapped into the node. Prints JSON, with the labels' agreement between
the two checkouts on one frame.
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
import numpy as np
import rclpy
import yaml
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from ..engine.frames import read_frames
from ..ros.conversions import image_to_numpy, numpy_to_image
from .benchmark_soak import rss_mb
from .processes import start_node

SOURCE = str(pathlib.Path(__file__).resolve().parents[2])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", required=True, help="real frames: a folder, list file or video")
    p.add_argument("--serve", type=float, default=45.0, help="seconds of frames before the second reading")
    p.add_argument("--rate", type=float, default=15.0)
    p.add_argument("--param", nargs="*", default=[], help="NAME=VALUE node parameters over the defaults")
    p.add_argument("--compare-source", help="another checkout whose node is measured the same way")
    p.add_argument("--domain-id", type=int, default=61)
    return p.parse_args(argv)


def measure(source, args, client, frames):
    """One node of ``source``: its figures and the labels of frames[0]."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="refinenet_node_memory_"))
    params = {"image_topics": ["/mem/image_raw"], **{k: yaml.safe_load(v) for k, v in
                                                      (p.split("=", 1) for p in args.param)}}
    (folder / "params.yaml").write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    env = dict(os.environ, PYTHONPATH=source, REFINENET_ROS_CACHE=str(folder / "cache"),
               ROS_DOMAIN_ID=str(args.domain_id), ROS_LOG_DIR=str(folder / "log"))
    node, lines = start_node(source, [f"{source}/config/params.yaml", folder / "params.yaml"], env)
    try:
        return _measure(node, lines, args, client, frames)
    finally:
        os.killpg(node.pid, signal.SIGINT)
        node.wait(60)


def _measure(node, lines, args, client, frames):
    time.sleep(3.0)
    maps = pathlib.Path(f"/proc/{node.pid}/maps")
    figures = {"rss_mb_before_first_frame": round(rss_mb(node.pid), 1), "torch_before": "libtorch" in maps.read_text()}
    labels = []
    client.create_subscription(Image, "/mem/segmentation/labels", labels.append, 10)
    publisher = client.create_publisher(Image, "/mem/image_raw", qos_profile_sensor_data)
    start, k = time.monotonic(), 0
    while time.monotonic() - start < args.serve:
        message = numpy_to_image(frames[k % len(frames)], "rgb8")
        message.header.stamp.sec = k
        publisher.publish(message)
        k, _ = k + 1, time.sleep(1.0 / args.rate)
    figures.update(rss_mb_serving=round(rss_mb(node.pid), 1), torch_serving="libtorch" in maps.read_text(),
                   labels=len(labels), configured=next((l.strip() for l in lines if "configured:" in l), ""))
    probe = None
    while probe is None and time.monotonic() - start < args.serve + 30:
        message = numpy_to_image(frames[0], "rgb8")
        message.header.stamp.sec = 1 << 30
        publisher.publish(message)
        time.sleep(0.3)
        probe = next((image_to_numpy(m) for m in labels if m.header.stamp.sec == 1 << 30), None)
    return figures, probe


def main(argv=None):
    args = parse_args(argv)
    frames = [cv2.resize(f, (640, 480)) for f in read_frames(args.frames, 20)]
    rclpy.init(domain_id=args.domain_id)
    client = rclpy.create_node("node_memory_camera")
    executor = SingleThreadedExecutor()
    executor.add_node(client)
    threading.Thread(target=executor.spin, daemon=True).start()
    report, probes = {}, {}
    try:
        for name, source in (("this", SOURCE), ("compare", args.compare_source)):
            if source:
                report[name], probes[name] = measure(os.path.abspath(source), args, client, frames)
    finally:
        executor.shutdown()
        rclpy.shutdown()
    if "compare" in report:
        for key in ("rss_mb_before_first_frame", "rss_mb_serving"):
            report[f"{key}_vs_compare"] = round(report["this"][key] / report["compare"][key], 3)
        if probes["this"] is not None and probes["compare"] is not None:
            report["labels_as_compare"] = round(float(np.mean(probes["this"] == probes["compare"])), 5)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
