"""Memory after a spike: the node's resident memory before, at and after one very large frame
among VGA ones, per backend. The node and its camera share one process, so Fast DDS hands the
large frame over within the process (a 7680x4320 frame is larger than any shared-memory segment
between processes) and the RSS is that one process's; the camera keeps no message.

    python -m refinenet_ros.tools.benchmark_memory --backends torch onnxruntime openvino

Each backend runs in its own child process. Prints JSON: rss_mb before, peak, and the samples
over ``--settle`` seconds after the large frame's labels arrived, and settled - before.
"""
import argparse
import json
import subprocess
import sys
import threading
import time

import numpy as np

from ..choices import BACKENDS


def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", nargs="+", default=[b for b in BACKENDS if b != "auto"], choices=BACKENDS)
    p.add_argument("--weights", default="default")
    p.add_argument("--precision", default="auto")
    p.add_argument("--spike", default="7680x4320", help="the large frame, WxH")
    p.add_argument("--settle", type=float, default=5.0, help="seconds of VGA frames after the spike")
    p.add_argument("--domain-id", type=int, default=29)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run_one(args, backend):
    """In this process: the node, VGA frames, one large frame, VGA frames; RSS throughout."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from ..ros.conversions import numpy_to_image
    from ..ros.node import SegmentationNode
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=args.domain_id)
    overrides = [Parameter("image_topics", value=["/memory/image_raw"]), Parameter("device", value="cpu"),
                 Parameter("weights", value=args.weights), Parameter("backend", value=backend),
                 Parameter("precision", value=args.precision), Parameter("qos", value="reliable")]
    node = SegmentationNode(context=context, parameter_overrides=overrides)
    client = rclpy.create_node("memory_camera", context=context)
    arrived = {"labels": 0, "big": False}
    big_width = int(args.spike.split("x")[0])

    def on_labels(message):
        arrived["labels"] += 1
        arrived["big"] = arrived["big"] or message.width == big_width

    for output in ("labels", "color", "overlay"):
        client.create_subscription(Image, f"/memory/segmentation/{output}",
                                   on_labels if output == "labels" else (lambda _: None), 2)
    publisher = client.create_publisher(Image, "/memory/image_raw", 1)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    for n in (node, client):
        executor.add_node(n)
    threading.Thread(target=executor.spin, daemon=True).start()
    vga = numpy_to_image(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8), "rgb8")

    def frames_until(predicate, timeout):
        deadline = time.monotonic() + timeout
        while not predicate() and time.monotonic() < deadline:
            before = arrived["labels"]
            publisher.publish(vga)
            wait = time.monotonic() + 2.0
            while arrived["labels"] == before and time.monotonic() < wait:
                time.sleep(0.005)

    try:
        frames_until(lambda: arrived["labels"] >= 15, 120)
        before = rss_mb()
        width, height = (int(v) for v in args.spike.split("x"))
        big = numpy_to_image(np.full((height, width, 3), 120, np.uint8), "rgb8")
        publisher.publish(big)
        del big
        peak, deadline = rss_mb(), time.monotonic() + 120
        while not arrived["big"] and time.monotonic() < deadline:  # nothing else until it is served
            time.sleep(0.01)
            peak = max(peak, rss_mb())
        peak, samples, settle_end = max(peak, rss_mb()), [], time.monotonic() + args.settle
        while time.monotonic() < settle_end:
            frames_until(lambda: False, 0.5)
            samples.append(round(rss_mb(), 1))
            peak = max(peak, samples[-1])
        return {"backend": node.segmenter.backend, "precision": node.segmenter.precision,
                "spike_segmented": arrived["big"], "rss_mb_before": round(before, 1),
                "rss_mb_peak": round(peak, 1), "rss_mb_settled": samples[-1],
                "settled_minus_before_mb": round(samples[-1] - before, 1), "rss_mb_samples": samples}
    finally:
        executor.shutdown()
        node.destroy_node()
        client.destroy_node()
        rclpy.shutdown(context=context)


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        print(json.dumps(run_one(args, args.backends[0])))
        return 0
    results = []
    for backend in args.backends:
        command = [sys.executable, "-m", __spec__.name, "--child", "--backends", backend, "--weights",
                   args.weights, "--precision", args.precision, "--spike", args.spike,
                   "--settle", str(args.settle), "--domain-id", str(args.domain_id)]
        done = subprocess.run(command, capture_output=True, text=True)
        lines = done.stdout.strip().splitlines()
        results.append(json.loads(lines[-1]) if done.returncode == 0 and lines else
                       {"backend": backend, "failed": (done.stderr.strip().splitlines() or ["?"])[-1]})
    print(json.dumps({"spike": args.spike, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
