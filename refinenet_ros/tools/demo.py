"""The demo: real street footage -> image_source -> segmentation_node -> PNGs and a report.

    python -m refinenet_ros.tools.demo                       # scripts/demo.sh runs this
    python -m refinenet_ros.tools.demo --source my.mp4 --frames 100 --device cuda
    python -m refinenet_ros.tools.demo --source /dev/video0 --weights runs/best.pth --arch mbv2

image_source and segmentation_node run as separate ROS 2 processes (their console scripts'
entry points, Fast DDS with config/fastdds.xml); this process subscribes to the input and the
output topics like any other node, measures fps and latency (frame stamp -> labels received),
and writes side-by-side PNGs (input | colour | overlay, with a class legend) and
report.json / report.txt to --output. The default input is OpenCV's vtest.avi street video
from Debian's opencv-doc package (fetched once, see refinenet_ros/tools/footage.py).
"""
import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from ..engine.model.shipped import config_file, resolve_weights
from ..ros.encodings import to_rgb
from ..ros.conversions import ImageConversionError, image_to_numpy
from ..ros.frame_sources import SourceError, source_kind
from ..ros.launch_helpers import ros_arguments
from . import demo_render
from .footage import FootageError, demo_footage
from .processes import log_tail, ros_environment, start_process, stop_processes

CAMERA = "camera"  # frames on /camera/image_raw, results on /camera/segmentation/*
OUTPUTS = ("labels", "color", "overlay")
UNSETTLED = ("trying", "no frames yet")  # the node's frames_in_flight while it is still choosing
SETTLE_TIMEOUT_S = 60.0  # after the first result: measure anyway


class DemoError(RuntimeError):
    """Something the user must fix (missing weights, bad source, a process that died)."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="refinenet-demo", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="demo", help="video, image folder, rosbag2, /dev/videoN, or "
                        "'demo' = vtest.avi street footage (default)")
    parser.add_argument("--weights", default="default", help="'default' (shipped CamVid model) or .pth/.onnx")
    parser.add_argument("--arch", default="mbv2", help="architecture of --weights")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--precision", default="auto", help="auto | fp32 | bf16 | fp16 | int8")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("W", "H"), default=None,
                        help="network input size (default: the shipped model's 480 360; native for --weights)")
    parser.add_argument("--frames", type=int, default=40, help="segmented frames to measure (default 40)")
    parser.add_argument("--warmup", type=int, default=3, help="first frames left out of the figures")
    parser.add_argument("--duration", type=float, default=120.0, help="stop measuring after this many s")
    parser.add_argument("--startup-timeout", type=float, default=180.0, help="s to wait for the first result")
    parser.add_argument("--rate", type=float, default=0.0, help="source rate in Hz (0 = its own timing)")
    parser.add_argument("--snapshots", type=int, default=4, help="side-by-side PNGs to write")
    parser.add_argument("--output", default="demo_output", help="folder for PNGs, report and logs")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.snapshots < 0 or args.warmup < 0:
        parser.error("--frames must be >= 1, --snapshots and --warmup >= 0")
    return args


def model_settings(args):
    """(weights, class names, (W, H) input size) for the node; clear errors for missing files."""
    if args.weights == "default":
        try:
            _, _, meta = resolve_weights("default")
        except FileNotFoundError as exc:
            raise DemoError(f"{exc}; or run the demo with --weights PATH (.pth or .onnx, with --arch)") from exc
        height, width = meta["input_size"]
        return "default", meta["classes"], tuple(args.input_size or (width, height))
    if not os.path.isfile(args.weights):
        raise DemoError(f"--weights {args.weights} does not exist")
    return os.path.abspath(args.weights), [], tuple(args.input_size or (0, 0))


class Recorder(Node):
    """Subscribes to the camera and the node's outputs; pairs them by header stamp."""

    def __init__(self, frames, warmup, snapshots):
        super().__init__("refinenet_demo")
        self.frames, self.warmup = frames, warmup
        self.targets = sorted({warmup + round(i * (frames - 1) / max(snapshots - 1, 1)) for i in range(snapshots)})
        self.pending = {}  # stamp -> {"input"|"labels"|...: msg, "index": n}
        self.snapshots, self.latest = [], None  # [(index, {kind: msg})], the newest complete one
        self.inputs = self.segmented = 0
        self.latencies_ms, self.output_times, self.class_pixels, self.input_times = [], [], {}, []
        self.engine, self.dropped, self.in_flight = {}, None, ""  # from the node's /diagnostics
        self.flicker = demo_render.FlickerCount()  # of the measured labels, where the image stands still
        self.create_subscription(Image, f"/{CAMERA}/image_raw", self.on_input, qos_profile_sensor_data)
        for kind in OUTPUTS:
            self.create_subscription(Image, f"/{CAMERA}/segmentation/{kind}",
                                     lambda msg, kind=kind: self.on_output(kind, msg), 10)
        self.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, 10)

    @staticmethod
    def stamp(msg):
        return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec

    def on_input(self, msg):
        self.inputs += 1
        self.input_times.append(time.monotonic())
        self._store(msg, "input")

    def on_output(self, kind, msg):
        if kind == "labels":
            self._measure(msg)
        self._store(msg, kind)

    def _measure(self, msg):
        received = time.time()
        index = self.segmented
        self.segmented += 1
        self.pending.setdefault(self.stamp(msg), {})["index"] = index
        if not self.settled or index < self.warmup or len(self.output_times) >= self.frames:
            return
        self.latencies_ms.append((received - self.stamp(msg) / 1e9) * 1000.0)
        self.output_times.append(time.monotonic())
        counts = np.bincount(to_numpy(msg).ravel().astype(np.int64))
        for k in np.flatnonzero(counts):
            self.class_pixels[int(k)] = self.class_pixels.get(int(k), 0) + int(counts[k])

    def _store(self, msg, kind):
        stamp = self.stamp(msg)
        entry = self.pending.setdefault(stamp, {})
        entry[kind] = msg
        if all(k in entry for k in ("input", "index", *OUTPUTS)):
            del self.pending[stamp]
            self.latest = (entry["index"], entry)
            if self.settled and entry["index"] >= self.warmup:
                self.flicker.add(to_numpy(entry["input"]), to_numpy(entry["labels"]))
            due = sum(1 for t in self.targets if t <= entry["index"])
            if len(self.snapshots) < due and entry["index"] < self.warmup + self.frames:
                self.snapshots.append(self.latest)
        while len(self.pending) > 64:  # frames the node dropped never complete
            del self.pending[min(self.pending)]

    def on_diagnostics(self, msg):
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if status.name.endswith(": inference") and values.get("batches_per_s", "0.00") != "0.00":
                self.engine = values
                if not self.settled and not any(w in values.get("frames_in_flight", "") for w in UNSETTLED):
                    self.settle(values.get("frames_in_flight", ""))
            elif "dropped_frames_total" in values:
                self.dropped = int(values["dropped_frames_total"])

    settled = property(lambda self: bool(self.in_flight))

    def settle(self, in_flight):
        """Measure from the next frame on: the node's steady state, after its live trial."""
        self.in_flight = in_flight or "unknown"
        self.warmup = max(self.warmup, self.segmented)
        self.targets = [self.warmup + t - self.targets[0] for t in self.targets] if self.targets else []
        self.snapshots = []
        print(f"frames in flight: {self.in_flight}; measuring from frame {self.warmup}", flush=True)

    def done(self):
        return len(self.output_times) >= self.frames


def to_numpy(msg):
    """Labels as they are (class indices), images as RGB: the demo's pictures."""
    try:
        pixels = image_to_numpy(msg)
        return pixels if msg.encoding in ("mono8", "mono16") else to_rgb(pixels, msg.encoding)
    except (ImageConversionError, ValueError, TypeError) as exc:
        raise DemoError(f"unexpected image on a demo topic: {exc}") from exc


def record(recorder, processes, args):
    """Spins until enough frames are measured, time is up, or a process dies."""
    started = time.monotonic()
    first_output = last_print = None
    while not recorder.done():
        rclpy.spin_once(recorder, timeout_sec=0.1)
        for process in processes:
            if process.poll() is not None:
                raise DemoError(f"{pathlib.Path(process.log_path).stem} exited with code {process.returncode}; "
                                f"its log ({process.log_path}) ends with:\n{log_tail(process)}")
        now = time.monotonic()
        if first_output is None and recorder.segmented:
            first_output = now
            print(f"first result after {now - started:.1f} s (model loading and warm-up)")
        if first_output is None and now - started > args.startup_timeout:
            raise DemoError(f"no segmentation within {args.startup_timeout:.0f} s; segmentation_node log:\n"
                            f"{log_tail(processes[0])}")
        if first_output is not None and not recorder.settled and now - first_output > SETTLE_TIMEOUT_S:
            recorder.settle("not chosen within the demo's wait")
        if first_output is not None and now - first_output > args.duration:
            print(f"stopping after --duration {args.duration:.0f} s")
            break
        if recorder.output_times and (last_print is None or now - last_print > 2.0):
            last_print = now
            times = recorder.output_times
            fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
            print(f"  {len(times)}/{args.frames} frames measured, {fps:.1f} fps, "
                  f"latency p50 {np.percentile(recorder.latencies_ms, 50):.0f} ms", flush=True)


def write_outputs(recorder, output, class_names, facts):
    class_names = class_names or [f"class_{k}" for k in range(max(recorder.class_pixels, default=0) + 1)]
    written = []
    for index, entry in recorder.snapshots:
        labels = to_numpy(entry["labels"])
        picture = demo_render.side_by_side(to_numpy(entry["input"]), to_numpy(entry["color"]),
                                           to_numpy(entry["overlay"]), labels, class_names,
                                           caption=f"frame {index}  |  {facts['source_name']}")
        path = output / f"frame_{index:04d}.png"
        demo_render.write_png(path, picture)
        written.append(path.name)
    report = demo_render.summary(recorder.latencies_ms, recorder.output_times, recorder.class_pixels,
                                 class_names, **facts, snapshots=written)
    (output / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (output / "report.txt").write_text(demo_render.report_text(report))
    return report


def run(args):
    weights, class_names, (width, height) = model_settings(args)
    source = str(demo_footage()) if args.source == "demo" else os.path.expanduser(args.source)
    source_kind(source)  # raises SourceError for a missing path before anything starts
    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    for old in output.glob("frame_*.png"):
        old.unlink()
    env = ros_environment()
    node_params = {"image_topics": [f"/{CAMERA}/image_raw"], "weights": weights, "arch": args.arch,
                   "device": args.device, "precision": args.precision,
                   "input_width": width, "input_height": height}
    source_params = {"source": source, "rate": args.rate, "loop": True, "frame_id": CAMERA,
                     "topic": "image_raw", "wait_for_subscribers": 2}
    rclpy.init()
    recorder = Recorder(args.frames, args.warmup, args.snapshots)
    processes = [
        start_process("segmentation_node", ros_arguments(
            [config_file("params.yaml")], node_params, name="segmentation_node",
            overrides_file=output / "segmentation_node_params.yaml"), output / "segmentation_node.log", env),
        start_process("image_source", ros_arguments(
            overrides=source_params, namespace=CAMERA, name="image_source",
            overrides_file=output / "image_source_params.yaml"), output / "image_source.log", env),
    ]
    print(f"segmenting {source} (weights {weights}, device {args.device}); "
          f"ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID', '0')}, logs in {output}/")
    try:
        started = time.monotonic()
        try:
            record(recorder, processes, args)
        except (KeyboardInterrupt, ExternalShutdownException):
            print("interrupted: writing what was recorded so far")
        if recorder.latest and recorder.latest not in recorder.snapshots and len(recorder.snapshots) < args.snapshots:
            recorder.snapshots.append(recorder.latest)  # a run cut short still gets its last frame
        facts = dict(source=source, source_name=pathlib.Path(source).name, weights=weights, arch=args.arch,
                     device=recorder.engine.get("device", args.device),
                     precision=recorder.engine.get("precision", args.precision),
                     backend=recorder.engine.get("backend", "?"),
                     network_input=[width, height] if width else "native",
                     frames_received=recorder.inputs, frames_segmented=recorder.segmented,
                     warmup_frames=args.warmup, wall_time_s=round(time.monotonic() - started, 1),
                     node_inference_ms_p50=recorder.engine.get("inference_ms_p50"),
                     label_flicker=recorder.flicker.share(),
                     node_frames_in_flight=recorder.in_flight,
                     source_fps=demo_render.rate_over(recorder.input_times, recorder.output_times),
                     node_dropped_frames=recorder.dropped,
                     rmw=os.environ["RMW_IMPLEMENTATION"])
    finally:
        stop_processes(processes)
        recorder.destroy_node()
        rclpy.try_shutdown()
    if not recorder.output_times:
        raise DemoError("no segmented frames were measured (--frames/--warmup/--duration too small?)")
    return write_outputs(recorder, output, class_names, facts), output


def main(argv=None):
    args = parse_args(argv)
    try:
        report, output = run(args)
    except (DemoError, FootageError, SourceError) as error:
        print(f"refinenet-demo: {error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        print("refinenet-demo: interrupted", file=sys.stderr)
        return 130
    print(demo_render.report_text(report), end="")
    print(f"wrote {len(report['snapshots'])} PNGs and report.json / report.txt to {output}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
