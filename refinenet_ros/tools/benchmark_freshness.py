"""How fresh the node's labels are, and what a label costs in CPU, per setting, in one run: one
camera of real frames at a fixed rate (default 30 Hz, 640x480) and a node per setting, each its
own process with a fresh cache of backend decisions (so ``backend: auto`` measures at every start).

    python -m refinenet_ros.tools.benchmark_freshness --frames ../shared/data/camvid/val.txt \\
        --rounds 6 [--starts 2] [--compare-source ../main]

The nodes are started one after another, each on its own camera topic, and each settles with the
camera publishing to it (``--warmup`` s after its first label: its own choices are made). Then, in
rounds, the camera publishes to one node at a time: ``--settle`` s, then ``--seconds`` measured,
the settings in turn, every other round in reverse order. A setting's windows are never more
than a minute from the others', so the machine's drift (10-20% between minutes on a shared VM)
cancels in each round's ratios; the summary gives each ratio's median and range over the rounds.
``--starts`` repeats the whole with fresh nodes (the choices made at start-up vary).

Per setting and window: the time-weighted age of the newest label (the age of the newest label,
from its frame's stamp, averaged over time), labels/s, latency p50/p90 (stamp -> labels
received), the node's CPU (cores, from /proc) and CPU per label; per setting, its node's log line
on its choice of frames in flight. ``--compare-source`` runs the node of another checkout (e.g.
an older main) with its defaults too, as ``defaults (compare)``. Summary: the defaults' age over
the best of OpenVINO with 1 and 2 frames in flight, waiting for the next frame or not, each
fixed (target <= 1.05), and CPU per label against
the compared checkout. Prints JSON.
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
from ..ros.intake.age import mean_age_ms
from .processes import stop_processes

# the defaults, and every mode their live trial chooses from, each fixed
SETTINGS = {"defaults": {}, **{
    f"openvino {count} in flight, wait for the next frame {wait}": {
        "backend": "openvino", "frames_in_flight": count, "wait_for_next_frame": wait}
    for count in (1, 2) for wait in ("always", "never")}}
FIXED_OPENVINO = [name for name in SETTINGS if name.startswith("openvino")]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", required=True, help="real frames: a folder, list file or video")
    p.add_argument("--count", type=int, default=60, help="frames read and cycled")
    p.add_argument("--rate", type=float, default=30.0, help="camera frames per second")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--warmup", type=float, default=30.0, help="seconds after a node's first label before it is measured")
    p.add_argument("--settle", type=float, default=3.0, help="seconds of each window before measuring")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds measured per setting and round")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--starts", type=int, default=1, help="times every node is started afresh")
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--compare-source", help="another checkout whose node runs its defaults too")
    p.add_argument("--domain-id", type=int, default=47)
    return p.parse_args(argv)


def image_topic(index):
    return f"/fresh{index}/image_raw"


class Camera:
    """Publishes the frames at a fixed rate to one of its topics at a time (``active``), stamped
    with the wall clock; records each label's arrival and age (arrival - stamp) per topic."""

    def __init__(self, context, frames, rate, topics):
        self.node = rclpy.create_node("freshness_camera", context=context)
        self.messages = [numpy_to_image(frame, "rgb8") for frame in frames]
        self.publishers = [self.node.create_publisher(Image, image_topic(i), qos_profile_sensor_data)
                           for i in range(topics)]
        for i in range(topics):
            self.node.create_subscription(Image, f"/fresh{i}/segmentation/labels",
                                          lambda msg, i=i: self._on_labels(i, msg), 10)
        self.rate, self.lock, self.events = rate, threading.Lock(), [[] for _ in range(topics)]
        self.active, self.stop = None, threading.Event()
        self.thread = threading.Thread(target=self._publish, daemon=True)
        self.thread.start()

    def _publish(self):
        period, next_time, index = 1.0 / self.rate, time.monotonic(), 0
        while not self.stop.is_set():
            active = self.active
            if active is not None:
                msg = self.messages[index % len(self.messages)]
                now = time.time()
                msg.header.stamp.sec, msg.header.stamp.nanosec = int(now), int((now % 1) * 1e9)
                self.publishers[active].publish(msg)
                index += 1
            next_time += period
            time.sleep(max(0.0, next_time - time.monotonic()))

    def _on_labels(self, topic, msg):
        now = time.time()
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self.lock:
            self.events[topic].append((time.monotonic(), now - stamp))

    def window(self, topic, seconds):
        """The labels of ``topic`` over the next ``seconds``."""
        with self.lock:
            self.events[topic] = []
        time.sleep(seconds)
        with self.lock:
            return list(self.events[topic])


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class SettingNode:
    """One setting's node process, on its own camera topic."""

    def __init__(self, folder, args, index, name, overrides, source=None):
        self.index, self.name = index, name
        params = {"/**": {"ros__parameters": {"image_topics": [image_topic(index)], "device": "cpu", **overrides}}}
        path = os.path.join(folder, f"{index}_{name.replace(' ', '_').replace(',', '')}.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(params, f)
        env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain_id), PYTHONUNBUFFERED="1",
                   REFINENET_ROS_CACHE=tempfile.mkdtemp(dir=folder, prefix="cache_"))  # measured afresh
        if source:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.abspath(source), env.get("PYTHONPATH")]))
        self.log_path = path + ".log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "refinenet_ros.ros.node", "--ros-args",
                                             "--params-file", path], env=env, stdout=log,
                                            stderr=subprocess.STDOUT, cwd=source or None)

    def settle(self, camera, warmup):
        """Publish to this node until its first label, then ``warmup`` s more."""
        camera.active, deadline = self.index, time.monotonic() + 600
        while not camera.window(self.index, 1.0):
            if self.process.poll() is not None or time.monotonic() > deadline:
                with open(self.log_path) as log:
                    raise RuntimeError(f"{self.name}: no labels; its log ends: {log.read()[-2000:]}")
        time.sleep(warmup)

    def measure(self, camera, settle_s, seconds):
        camera.active = self.index
        time.sleep(settle_s)
        before, started = cpu_seconds(self.process.pid), time.monotonic()
        events = camera.window(self.index, seconds)
        cores = (cpu_seconds(self.process.pid) - before) / (time.monotonic() - started)
        labels_per_s = len(events) / seconds
        ages = [age * 1000 for _, age in events]
        return {"label_age_ms": _round(mean_age_ms(events)), "labels_per_s": round(labels_per_s, 2),
                "latency_ms_p50": _round(np.percentile(ages, 50) if ages else None),
                "latency_ms_p90": _round(np.percentile(ages, 90) if ages else None),
                "node_cores": round(cores, 2),
                "cpu_ms_per_label": _round(1000 * cores / labels_per_s if labels_per_s else None)}

    def choices(self):
        with open(self.log_path) as log:
            lines = log.read().splitlines()
        return {"configured": next((line[line.index("configured:"):][:400] for line in lines
                                    if "configured:" in line), None),
                "frames_in_flight": [line[line.index("frames in flight:"):] for line in lines
                                     if "frames in flight:" in line]}


def _round(value):
    return None if value is None else round(float(value), 1)


def _ratio(row, numerator, denominator, figure):
    a = row.get(numerator, {}).get(figure) if isinstance(numerator, str) else numerator
    b = row.get(denominator, {}).get(figure) if isinstance(denominator, str) else denominator
    return round(a / b, 3) if a and b else None


def summarise(rounds):
    """Per round, the defaults' age over the best fixed OpenVINO setting and CPU per label over the
    compared checkout's; each ratio's median and range over the rounds."""
    per_round = []
    for row in rounds:
        ovs = [row[s]["label_age_ms"] for s in FIXED_OPENVINO if row.get(s, {}).get("label_age_ms")]
        per_round.append({
            "defaults_age_vs_best_openvino": _ratio(row, "defaults", min(ovs) if ovs else None, "label_age_ms"),
            "defaults_cpu_per_label_vs_compare": _ratio(row, "defaults", "defaults (compare)", "cpu_ms_per_label"),
            "defaults_age_vs_compare": _ratio(row, "defaults", "defaults (compare)", "label_age_ms")})
    summary = {"per_round": per_round}
    for key in per_round[0] if per_round else ():
        values = [r[key] for r in per_round if r[key] is not None]
        if values:
            summary[key] = {"median": round(float(np.median(values)), 3), "min": min(values), "max": max(values)}
    return summary


def run_start(folder, camera, settings, args):
    """Every setting's node started and settled in turn, then ``args.rounds`` rounds of windows."""
    nodes = []
    try:
        for index, (name, overrides, source) in enumerate(settings):
            camera.active = None  # the nodes started so far idle while this one starts up
            nodes.append(SettingNode(folder, args, index, name, overrides, source))
            nodes[-1].settle(camera, args.warmup)
            print(f"{name}: settled", file=sys.stderr, flush=True)
        rounds = []
        for number in range(args.rounds):
            # every other round in reverse order: a drift of the machine favours no setting
            row = {node.name: node.measure(camera, args.settle, args.seconds)
                   for node in (nodes[::-1] if number % 2 else nodes)}
            print(f"round {number}: {json.dumps(row)}", file=sys.stderr, flush=True)
            rounds.append(row)
        camera.active = None
        return {"nodes": {node.name: node.choices() for node in nodes}, "rounds": rounds,
                "summary": summarise(rounds)}
    finally:
        camera.active = None
        stop_processes([node.process for node in nodes])


def main(argv=None):
    args = parse_args(argv)
    frames = [cv2.resize(f, (args.width, args.height), interpolation=cv2.INTER_AREA)
              for f in read_frames(args.frames, args.count)]
    settings = [(name, SETTINGS[name], None) for name in args.settings]
    if args.compare_source:
        settings.append(("defaults (compare)", {}, args.compare_source))
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=args.domain_id)
    camera = Camera(context, frames, args.rate, len(settings))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(camera.node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        with tempfile.TemporaryDirectory(prefix="refinenet_freshness_") as folder:
            starts = [run_start(folder, camera, settings, args) for _ in range(args.starts)]
    finally:
        camera.stop.set()
        camera.thread.join()
        executor.shutdown()
        spinner.join()
        camera.node.destroy_node()
        rclpy.shutdown(context=context)
    print(json.dumps({"camera": {"rate": args.rate, "size": [args.height, args.width], "frames": args.frames},
                      "windows": {"settle_s": args.settle, "measured_s": args.seconds},
                      "starts": starts}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
