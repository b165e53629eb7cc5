"""How fresh the node's labels are under a live camera, per setting, in one run: one camera of
real frames at a fixed rate (default 30 Hz, 640x480), the node started afresh for each setting
(its own process, a fresh cache of backend decisions, so ``backend: auto`` measures at every
start), settings in turn and in rounds, every other round in reverse order (the machine is
noisy: compare within a round).

    python -m refinenet_ros.tools.benchmark_freshness --frames ../shared/data/camvid/val.txt \\
        --rounds 2 [--compare-source ../main]

Per setting and round: the time-weighted age of the newest label (the age of the newest label,
from its frame's stamp, averaged over time), labels/s, latency p50/p90 (stamp -> labels
received), the node's CPU (cores, from /proc) and CPU per label, and the node's own log line on
its choice of frames in flight. ``--compare-source`` runs the node of another checkout (e.g.
an older main) with its defaults too, as ``defaults (compare)``. Summary: each round's defaults
age over the better of OpenVINO with 1 and 2 frames in flight (target <= 1.05), and CPU per label
against the compared checkout. Prints JSON.
"""
import argparse
import json
import os
import subprocess
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
from ..ros.conversions import numpy_to_image
from ..ros.freshness import mean_age_ms
from .processes import stop_processes

SETTINGS = {"defaults": {}, "openvino 1 in flight": {"backend": "openvino", "inference_streams": 1},
            "openvino 2 in flight": {"backend": "openvino", "inference_streams": 2},
            "defaults, no waiting for fresh frames": {"wait_for_fresh_frames": False}}
TOPIC = "/fresh/image_raw"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", required=True, help="real frames: a folder, list file or video")
    p.add_argument("--count", type=int, default=60, help="frames read and cycled")
    p.add_argument("--rate", type=float, default=30.0, help="camera frames per second")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--warmup", type=float, default=30.0, help="seconds after the first label before measuring")
    p.add_argument("--seconds", type=float, default=20.0, help="seconds measured per setting")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--compare-source", help="another checkout whose node runs its defaults too")
    p.add_argument("--domain-id", type=int, default=47)
    return p.parse_args(argv)


class Camera:
    """Publishes the frames at a fixed rate, stamped with the wall clock; records each label's
    arrival and age (arrival - stamp)."""

    def __init__(self, context, frames, rate):
        self.node = rclpy.create_node("freshness_camera", context=context)
        self.messages = [numpy_to_image(frame, "rgb8") for frame in frames]
        self.publisher = self.node.create_publisher(Image, TOPIC, qos_profile_sensor_data)
        self.node.create_subscription(Image, "/fresh/segmentation/labels", self._on_labels, 10)
        self.rate, self.lock, self.events = rate, threading.Lock(), []  # (arrival, age)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._publish, daemon=True)
        self.thread.start()

    def _publish(self):
        period, next_time, index = 1.0 / self.rate, time.monotonic(), 0
        while not self.stop.is_set():
            msg = self.messages[index % len(self.messages)]
            now = time.time()
            msg.header.stamp.sec, msg.header.stamp.nanosec = int(now), int((now % 1) * 1e9)
            self.publisher.publish(msg)
            index += 1
            next_time += period
            time.sleep(max(0.0, next_time - time.monotonic()))

    def _on_labels(self, msg):
        now = time.time()
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self.lock:
            self.events.append((time.monotonic(), now - stamp))

    def window(self, seconds):
        with self.lock:
            self.events = []
        time.sleep(seconds)
        with self.lock:
            return list(self.events)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_node(folder, args, name, overrides, source=None):
    params = {"/**": {"ros__parameters": {"image_topics": [TOPIC], "device": "cpu", **overrides}}}
    path = os.path.join(folder, f"{name.replace(' ', '_')}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(params, f)
    env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain_id), PYTHONUNBUFFERED="1",
               REFINENET_ROS_CACHE=tempfile.mkdtemp(dir=folder, prefix="cache_"))  # measured afresh
    if source:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.abspath(source), env.get("PYTHONPATH")]))
    log = open(path + ".log", "w")
    process = subprocess.Popen([sys.executable, "-m", "refinenet_ros.ros.node", "--ros-args", "--params-file",
                                path], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=source or None)
    return process, path + ".log"


def measure(camera, process, log_path, args):
    """Wait for labels, warm up (the node's own choices), then one measured window."""
    deadline = time.monotonic() + 600
    while not camera.window(1.0) and time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the node exited: {open(log_path).read()[-2000:]}")
    time.sleep(args.warmup)
    before, started = cpu_seconds(process.pid), time.monotonic()
    events = camera.window(args.seconds)
    cores = (cpu_seconds(process.pid) - before) / (time.monotonic() - started)
    labels_per_s = len(events) / args.seconds
    ages = [age * 1000 for _, age in events]
    lines = open(log_path).read().splitlines()
    return {"label_age_ms": _round(mean_age_ms(events)), "labels_per_s": round(labels_per_s, 2),
            "latency_ms_p50": _round(np.percentile(ages, 50) if ages else None),
            "latency_ms_p90": _round(np.percentile(ages, 90) if ages else None),
            "node_cores": round(cores, 2),
            "cpu_ms_per_label": _round(1000 * cores / labels_per_s if labels_per_s else None),
            "configured": next((line[line.index("configured:"):][:400] for line in lines if "configured:" in line), None),
            "frames_in_flight": [line[line.index("frames in flight:"):] for line in lines if "frames in flight:" in line]}


def _round(value):
    return None if value is None else round(float(value), 1)


def summarise(rounds):
    summary = []
    for number, row in enumerate(rounds):
        ovs = [row[s]["label_age_ms"] for s in ("openvino 1 in flight", "openvino 2 in flight") if s in row]
        entry = {"round": number}
        if "defaults" in row and ovs:
            entry["defaults_age_vs_best_openvino"] = round(row["defaults"]["label_age_ms"] / min(ovs), 3)
        if "defaults" in row and "defaults (compare)" in row:
            entry["defaults_cpu_per_label_vs_compare"] = round(
                row["defaults"]["cpu_ms_per_label"] / row["defaults (compare)"]["cpu_ms_per_label"], 3)
        summary.append(entry)
    return summary


def main(argv=None):
    args = parse_args(argv)
    frames = [cv2.resize(f, (args.width, args.height), interpolation=cv2.INTER_AREA)
              for f in read_frames(args.frames, args.count)]
    settings = [(name, SETTINGS[name], None) for name in args.settings]
    if args.compare_source:
        settings.append(("defaults (compare)", {}, args.compare_source))
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=args.domain_id)
    camera = Camera(context, frames, args.rate)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(camera.node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    rounds = []
    try:
        with tempfile.TemporaryDirectory(prefix="refinenet_freshness_") as folder:
            for number in range(args.rounds):
                row = {}
                # every other round in reverse order: a drift of the machine favours no setting
                for name, overrides, source in settings[::-1] if number % 2 else settings:
                    process, log_path = start_node(folder, args, name, overrides, source)
                    try:
                        row[name] = measure(camera, process, log_path, args)
                    finally:
                        stop_processes([process])
                    print(f"{name}: {json.dumps(row[name])}", file=sys.stderr, flush=True)
                rounds.append(row)
    finally:
        camera.stop.set()
        camera.thread.join()
        executor.shutdown()
        spinner.join()
        camera.node.destroy_node()
        rclpy.shutdown(context=context)
    print(json.dumps({"camera": {"rate": args.rate, "size": [args.height, args.width], "frames": args.frames},
                      "rounds": rounds, "summary": summarise(rounds)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
