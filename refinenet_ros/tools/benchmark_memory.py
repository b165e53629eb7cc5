"""Memory after spikes: the node's resident memory before, at and after very large frames among
VGA ones, in any order (4K then 8K, several 4K in a row, ...), per backend. The node and its camera share one process, so Fast DDS hands the
large frame over within the process (a 7680x4320 frame is larger than any shared-memory segment
between processes) and the RSS is that one process's; the camera keeps no message.

    python -m refinenet_ros.tools.benchmark_memory --backends torch onnxruntime openvino
    python -m refinenet_ros.tools.benchmark_memory --before-frames 1 \
        --orders 3840x2160,7680x4320 3840x2160,3840x2160,3840x2160

Each backend runs in its own child process; its orders run one after the other, each followed by
``--settle`` idle seconds (no frames: nothing but the node itself can give the memory back). Prints JSON per order: rss_mb before the first order, the
peak, the samples while settling, and settled - before.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np

from ..choices import BACKENDS
from .benchmark_soak import rss_mb


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", nargs="+", default=[b for b in BACKENDS if b != "auto"], choices=BACKENDS)
    p.add_argument("--weights", default="default")
    p.add_argument("--precision", default="auto")
    p.add_argument("--orders", nargs="+", default=["7680x4320"],
                   help="large frames, each order a comma-separated sequence of WxH")
    p.add_argument("--before-frames", type=int, default=15, help="VGA frames served before the first order")
    p.add_argument("--settle", type=float, default=5.0, help="seconds of VGA frames after the spike")
    p.add_argument("--domain-id", type=int, default=29)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


class Rig:
    """The node and a camera on one private context, spun in the background."""

    def __init__(self, args, backend):
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.parameter import Parameter
        from sensor_msgs.msg import Image

        from ..ros.conversions import numpy_to_image
        from ..ros.node import SegmentationNode
        self.rclpy, self.to_image = rclpy, numpy_to_image
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=args.domain_id)
        overrides = [Parameter("image_topics", value=["/memory/image_raw"]), Parameter("device", value="cpu"),
                     Parameter("weights", value=args.weights), Parameter("backend", value=backend),
                     Parameter("precision", value=args.precision), Parameter("qos", value="reliable")]
        self.node = SegmentationNode(context=self.context, parameter_overrides=overrides)
        self.client = rclpy.create_node("memory_camera", context=self.context)
        self.labels, self.big_seen = 0, 0  # big_seen: labels of large frames
        for output in ("labels", "color", "overlay"):
            self.client.create_subscription(Image, f"/memory/segmentation/{output}",
                                            self._on_labels if output == "labels" else (lambda _: None), 2)
        self.publisher = self.client.create_publisher(Image, "/memory/image_raw", 1)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        for node in (self.node, self.client):
            self.executor.add_node(node)
        threading.Thread(target=self.executor.spin, daemon=True).start()
        frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        self.vga = numpy_to_image(frame, "rgb8")

    def _on_labels(self, message):
        self.labels += 1
        self.big_seen += message.width > 640

    def vga_frames(self, until, timeout):
        """VGA frames, each once the previous one's labels came back, until ``until()``."""
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            before, wait = self.labels, time.monotonic() + 2.0
            self.publisher.publish(self.vga)
            while self.labels == before and time.monotonic() < wait:
                time.sleep(0.005)

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.client.destroy_node()
        self.rclpy.shutdown(context=self.context)


def run_one(args, backend):
    """In this process: VGA frames, then each order's large frames (each once the previous was
    served) followed by VGA frames while settling; RSS throughout."""
    rig = Rig(args, backend)
    try:
        rig.vga_frames(lambda: rig.labels >= args.before_frames, 120)
        before, orders = rss_mb(os.getpid()), []
        for order in args.orders:
            orders.append({"order": order, **_one_order(rig, args, order, before)})
        return {"backend": rig.node.segmenter.backend, "precision": rig.node.segmenter.precision,
                "rss_mb_before": round(before, 1), "orders": orders}
    finally:
        rig.close()


def _one_order(rig, args, order, before):
    peak, served = before, True
    for size in order.split(","):
        width, height = (int(v) for v in size.split("x"))
        seen, deadline = rig.big_seen, time.monotonic() + 120
        rig.publisher.publish(rig.to_image(np.full((height, width, 3), 120, np.uint8), "rgb8"))
        while rig.big_seen == seen and time.monotonic() < deadline:  # nothing else until it is served
            time.sleep(0.01)
            peak = max(peak, rss_mb(os.getpid()))
        served = served and rig.big_seen > seen
    samples, settle_end = [], time.monotonic() + args.settle
    while time.monotonic() < settle_end:  # idle: nothing arrives that could trigger a release
        time.sleep(0.5)
        samples.append(round(rss_mb(os.getpid()), 1))
    rig.vga_frames(lambda: False, 0.5)  # the next order starts from ordinary frames
    return {"spikes_segmented": served, "rss_mb_peak": round(max([peak, *samples]), 1),
            "rss_mb_settled": samples[-1], "settled_minus_before_mb": round(samples[-1] - before, 1),
            "rss_mb_samples": samples}


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        print(json.dumps(run_one(args, args.backends[0])))
        return 0
    results = []
    for backend in args.backends:
        command = [sys.executable, "-m", __spec__.name, "--child", "--backends", backend, "--weights",
                   args.weights, "--precision", args.precision, "--orders", *args.orders,
                   "--before-frames", str(args.before_frames), "--settle", str(args.settle),
                   "--domain-id", str(args.domain_id)]
        done = subprocess.run(command, capture_output=True, text=True)
        lines = done.stdout.strip().splitlines()
        results.append(json.loads(lines[-1]) if done.returncode == 0 and lines else
                       {"backend": backend, "failed": (done.stderr.strip().splitlines() or ["?"])[-1]})
    print(json.dumps({"orders": args.orders, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
