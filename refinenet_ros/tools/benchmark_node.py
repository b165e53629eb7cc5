"""Benchmark of the segmentation node through real topics, against the raw Segmenter measured
in the same run on the same frames (the machine may be shared: compare ratios, not figures).

    python -m refinenet_ros.tools.benchmark_node --seconds 10 [--device cuda] [--weights PATH]

Prints JSON: for each setting (defaults, max_batch_size 1, frames_in_flight 1, precision fp32) and camera count
(1 and --cameras), the node's output frames/s with every camera publishing at 1.5x the raw
engine's rate, the first camera's time-weighted label age (the age of the newest label, averaged
over time), latency p50/p90/p99 (publish -> labels received, queueing included) and the node's
own per-stage p50 times from /diagnostics (convert, preprocess, model, postprocess, publish),
plus the latency with one frame in flight and the CPU (in cores) that this publishing process
used meanwhile, which competes with the node on a small machine; and ratios from one run:
- ``node_vs_raw_1_camera``: defaults, one camera, over raw ``Segmenter.segment`` computing the same
  outputs (labels, colour, overlay) one call at a time (target >= 0.9);
- ``node_vs_raw_in_flight_1_camera``: the same over ``segment()`` on as many threads as the
  backend runs streams (the node's own way of calling it), where it runs more than one;
- ``defaults_vs_max_batch_size_1``: --cameras cameras, defaults over max_batch_size 1 (>= 1.0);
- ``defaults_vs_frames_in_flight_1_1_camera``: one camera, defaults over one frame at a time.
The node runs as its own process (python -m refinenet_ros.ros.node with a params file), as on a
robot; frames cross DDS (shared memory with config/fastdds.xml) between the two processes.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import rclpy
import torch
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from ..choices import BACKENDS
from ..engine import Segmenter
from ..models import create_model
from ..ros.conversions import numpy_to_image
from ..ros.intake.age import mean_age_ms
from .processes import stop_processes

OVERLAY_ALPHA = 0.5  # the node's default: the raw engine computes what the node publishes


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="mbv2")
    parser.add_argument("--weights", default=None, help="checkpoint (default: random init, 11 classes)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--backend", default="auto", choices=BACKENDS)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each measurement")
    parser.add_argument("--domain-id", type=int, default=22)
    parser.add_argument("--rate-factor", type=float, default=1.5,
                        help="each camera publishes at this multiple of the raw engine's rate")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    return parser.parse_args(argv)


def raw_segmenter(segmenter, frame, seconds, batch=1):
    """Frames per second and median ms per call of segment() on ``batch`` copies of ``frame``."""
    for _ in range(3):
        segmenter.segment([frame] * batch, overlay_alpha=OVERLAY_ALPHA)
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 5:
        t = time.perf_counter()
        segmenter.segment([frame] * batch, overlay_alpha=OVERLAY_ALPHA)
        if segmenter.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return len(times) * batch / sum(times), statistics.median(times) * 1000.0


def raw_in_flight(segmenter, frame, seconds):
    """Frames per second of segment() called on ``segmenter.streams`` threads at once, as the
    node's pipeline calls it (None when the backend runs one call at a time)."""
    if segmenter.streams < 2:
        return None
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(segmenter.streams) as pool:
        return sum(pool.map(lambda _: raw_segmenter(segmenter, frame, seconds)[0], range(segmenter.streams)))


class Driver:
    """Publishes frames on camera topics and timestamps the labels that come back."""

    def __init__(self, context, namespaces, frame):
        self.node = rclpy.create_node("benchmark_driver", context=context)
        self.messages = []
        for ns in namespaces:
            msg = numpy_to_image(frame, "rgb8")
            msg.header.frame_id = ns
            self.messages.append(msg)
        self.publishers = [self.node.create_publisher(Image, f"{ns}/image_raw", qos_profile_sensor_data)
                           for ns in namespaces]
        self.sent, self.arrivals = {}, []  # stamp -> publish time; (arrival time, latency, camera)
        self.lock, self.arrived = threading.Lock(), threading.Event()
        self.sequence = 0
        self.stages = []  # per /diagnostics report: {stage: p50 ms} of the node's own timing
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, 10)
        for ns in namespaces:
            self.node.create_subscription(Image, f"{ns}/segmentation/labels", self.on_labels, 10)
            for output in ("color", "overlay"):  # the node's default outputs
                self.node.create_subscription(Image, f"{ns}/segmentation/{output}", lambda msg: None, 10)

    def publish(self, camera):
        msg = self.messages[camera]
        with self.lock:
            self.sequence += 1
            msg.header.stamp.sec = self.sequence
            self.sent[(camera, self.sequence)] = time.perf_counter()
        self.publishers[camera].publish(msg)

    def on_labels(self, msg):
        now = time.perf_counter()
        with self.lock:
            camera = next(i for i, m in enumerate(self.messages) if m.header.frame_id == msg.header.frame_id)
            sent = self.sent.pop((camera, msg.header.stamp.sec), None)
            if sent is not None:
                self.arrivals.append((now, now - sent, camera))
                if len(self.sent) > 10000:
                    self.sent.clear()
        self.arrived.set()

    def on_diagnostics(self, msg):
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if status.name.endswith(": inference") and "stage_ms_model_p50" in values:
                with self.lock:
                    self.stages.append({key[9:-4]: float(value) for key, value in values.items()
                                        if key.startswith("stage_ms_")})

    def reset(self):
        with self.lock:
            self.sent.clear()
            self.arrivals = []
            self.stages = []

    def open_loop(self, cameras, rate, seconds):
        """Publish on ``cameras`` at ``rate`` Hz each for ``seconds``; output fps over the window."""
        self.reset()
        start = time.perf_counter()
        period = 1.0 / rate
        next_time = start
        while time.perf_counter() - start < seconds:
            for camera in range(cameras):
                self.publish(camera)
            next_time += period
            time.sleep(max(0.0, next_time - time.perf_counter()))
        end = time.perf_counter()
        time.sleep(0.5)
        with self.lock:
            return sum(start + 0.5 <= t <= end for t, *_ in self.arrivals) / (end - start - 0.5)

    def closed_loop(self, seconds, timeout=5.0):
        """One frame in flight: median publish -> labels latency in ms."""
        self.reset()
        start = time.perf_counter()
        latencies = []
        while time.perf_counter() - start < seconds or len(latencies) < 5:
            self.arrived.clear()
            count = len(self.arrivals)
            self.publish(0)
            if not self.arrived.wait(timeout):
                continue  # lost (best effort): send again
            with self.lock:
                if len(self.arrivals) > count:
                    latencies.append(self.arrivals[-1][1])
        return statistics.median(latencies) * 1000.0


def wait_connected(driver, cameras, timeout=180.0, round_s=5.0):
    """Publish a frame per camera until all come back in one round (the node process may still
    be starting; a round allows for a slow model: 4 VGA frames take ~1 s on a 2-core CPU)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        driver.reset()
        for camera in range(cameras):
            driver.publish(camera)
        round_end = time.monotonic() + round_s
        while time.monotonic() < round_end:
            time.sleep(0.1)
            with driver.lock:
                if len(driver.arrivals) >= cameras:
                    return
    raise RuntimeError("the node never answered: check ROS_DOMAIN_ID and the Fast DDS profile")


def start_node(tmp, args, weights, namespaces, max_batch_size, **extra):
    """The node as users run it: its own process, parameters from a YAML file."""
    params = {"/**": {"ros__parameters": {
        "image_topics": [f"{ns}/image_raw" for ns in namespaces], "arch": args.arch, "weights": weights,
        "device": args.device, "precision": args.precision, "backend": args.backend,
        "diagnostics_period": 1.0, "max_batch_size": max_batch_size, **extra}}}
    path = os.path.join(tmp, f"params_{len(os.listdir(tmp))}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(params, f)
    env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain_id))
    return subprocess.Popen([sys.executable, "-m", "refinenet_ros.ros.node", "--ros-args", "--params-file", path],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure_node(tmp, args, weights, namespaces, max_batch_size, measurements, **extra):
    process = start_node(tmp, args, weights, namespaces, max_batch_size, **extra)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=args.domain_id)
    driver = Driver(context, namespaces, measurements["frame"])
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(driver.node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        wait_connected(driver, len(namespaces))
        return {name: fn(driver) for name, fn in measurements["runs"].items()}
    finally:
        stop_processes([process])
        executor.shutdown()
        driver.node.destroy_node()
        rclpy.shutdown(context=context)


SETTINGS = {"defaults": {}, "max_batch_size 1": {"max_batch_size": 1}, "frames_in_flight 1": {"frames_in_flight": 1},
            "fp32": {"precision": "fp32"}}


def window_figures(driver, cameras, rate, seconds):
    """Open loop on ``cameras`` at ``rate`` Hz each: fps, label age, latency, median stage times."""
    wall, cpu = time.perf_counter(), time.process_time()
    fps = driver.open_loop(cameras, rate=rate, seconds=seconds)
    client_cores = (time.process_time() - cpu) / (time.perf_counter() - wall)
    with driver.lock:
        arrivals, reports = list(driver.arrivals), list(driver.stages)
    latencies = [latency * 1000 for _, latency, _ in arrivals]
    stages = {name: round(statistics.median(r[name] for r in reports if name in r), 1) for name in
              ("convert", "preprocess", "model", "postprocess", "publish") if any(name in r for r in reports)}
    age = mean_age_ms((t, latency) for t, latency, camera in arrivals if camera == 0)
    return {"fps": round(fps, 2), "label_age_ms": age and round(age, 1),
            "latency_ms_p50": round(float(np.percentile(latencies, 50)), 1) if latencies else None,
            "latency_ms_p90": round(float(np.percentile(latencies, 90)), 1) if latencies else None,
            "latency_ms_p99": round(float(np.percentile(latencies, 99)), 1) if latencies else None,
            "stage_ms_p50": stages, "publishing_client_cpu_cores": round(client_cores, 2)}


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(0)
    frame = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights
        if weights is None:
            weights = f"{tmp}/random_{args.arch}.pth"
            torch.save(create_model(args.arch, 11).state_dict(), weights)
        segmenter = Segmenter(arch=args.arch, weights=weights, device=args.device, precision=args.precision,
                              backend=args.backend)
        raw_fps, raw_ms = raw_segmenter(segmenter, frame, args.seconds)
        streams = Segmenter(arch=args.arch, weights=weights, device=args.device,
                            precision=segmenter.precision, backend=segmenter.backend, streams="auto")
        in_flight_fps = raw_in_flight(streams, frame, args.seconds)
        del streams
        rate = raw_fps * args.rate_factor  # per camera: more than the node can serve
        namespaces = [f"/bench{i}" for i in range(args.cameras)]
        for name, overrides in ((n, SETTINGS[n]) for n in args.settings):
            # one frame in flight first, on an idle node (frames left over by an open loop on
            # other cameras would be served before it: round robin)
            runs = {"latency_ms_one_in_flight": lambda d: round(d.closed_loop(args.seconds / 2), 1)}
            runs.update({f"{n} camera{'s' if n > 1 else ''}": (lambda d, n=n: window_figures(d, n, rate, args.seconds))
                         for n in (1, args.cameras)})
            extra = {key: value for key, value in overrides.items() if key != "max_batch_size"}
            rows[name] = measure_node(tmp, args, weights, namespaces, overrides.get("max_batch_size", 4),
                                      {"frame": frame, "runs": runs}, **extra)
        again_fps, again_ms = raw_segmenter(segmenter, frame, args.seconds)  # keep the better: conservative
        raw_fps, raw_ms = max(raw_fps, again_fps), min(raw_ms, again_ms)
    one, many = "1 camera", f"{args.cameras} cameras"
    print(json.dumps({
        "device": str(segmenter.device), "precision": segmenter.precision, "backend": segmenter.backend,
        "arch": args.arch, "frame": [args.height, args.width], "torch_threads": torch.get_num_threads(),
        "raw_segmenter_fps": round(raw_fps, 2), "raw_inference_ms_p50": round(raw_ms, 2),
        "raw_in_flight_fps": in_flight_fps and round(in_flight_fps, 2), "settings": rows,
        "node_vs_raw_1_camera": round(rows["defaults"][one]["fps"] / raw_fps, 3),
        "node_vs_raw_in_flight_1_camera": in_flight_fps and round(rows["defaults"][one]["fps"] / in_flight_fps, 3),
        "defaults_vs_max_batch_size_1": round(rows["defaults"][many]["fps"] / rows["max_batch_size 1"][many]["fps"], 3)
        if "max_batch_size 1" in rows else None,
        "defaults_vs_frames_in_flight_1_1_camera": round(rows["defaults"][one]["fps"] / rows["frames_in_flight 1"][one]["fps"], 3)
        if "frames_in_flight 1" in rows else None, "rate_factor": args.rate_factor,
        "targets": {"node_vs_raw_1_camera": ">= 0.9", "defaults_vs_max_batch_size_1": ">= 1.0 (aim 1.3)"},
    }, indent=2))


if __name__ == "__main__":
    main()
