"""Soak benchmark: N cameras publishing faster than the node can serve, for minutes, with the
node in its own process as on a robot. Reports each camera's share of the delivered frames
(1.0 = the mean; fair scheduling keeps every camera within 20% of it), latency p50/p99, and
the node's resident memory over time, around one large frame sent mid-run (``--spike``).

    python -m refinenet_ros.tools.benchmark_soak --cameras 8 --rate 5 --seconds 120 --spike 3840x2160

Prints JSON. Not a test: figures depend on the machine; compare runs made on the same one.
"""
import argparse
import json
import statistics
import tempfile
import threading
import time

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor

from ..choices import BACKENDS
from ..ros.conversions import numpy_to_image
from .benchmark_node import Driver, start_node, wait_connected
from .processes import stop_processes


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default="default")
    p.add_argument("--arch", default="mbv2")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="auto")
    p.add_argument("--backend", default="auto", choices=BACKENDS)
    p.add_argument("--cameras", type=int, default=8)
    p.add_argument("--rate", type=float, default=5.0, help="Hz per camera (more than the node can serve)")
    p.add_argument("--size", default="320x240", help="camera frames, WxH")
    p.add_argument("--max-batch-size", type=int, default=4)
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--window", type=float, default=10.0, help="seconds per RSS / share sample")
    p.add_argument("--spike", default="3840x2160", help="one frame of this size on camera 0 mid-run ('' = none)")
    p.add_argument("--domain-id", type=int, default=23)
    return p.parse_args(argv)


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))


def soak(driver, process, args):
    """Open loop at ``args.rate`` per camera; a sample per window; the spike frame at half time."""
    period, samples, spike_at = 1.0 / args.rate, [], args.seconds / 2
    start = next_time = next_sample = time.perf_counter()
    spike_key, quiet_until = None, 0.0  # camera 0 pauses after the spike so that it is served
    while time.perf_counter() - start < args.seconds:
        for camera in range(args.cameras):
            if camera or time.perf_counter() >= quiet_until:
                driver.publish(camera)
        if args.spike and spike_key is None and time.perf_counter() - start >= spike_at:
            spike_key = publish_spike(driver, args.spike)
            quiet_until = time.perf_counter() + 3.0
            samples.append({"t": round(time.perf_counter() - start, 1), "event": f"{args.spike} frame"})
        if time.perf_counter() >= next_sample + args.window:
            next_sample += args.window
            samples.append({"t": round(next_sample - start, 1), "rss_mb": round(rss_mb(process.pid), 1)})
        next_time += period
        time.sleep(max(0.0, next_time - time.perf_counter()))
    time.sleep(2.0)
    samples.append({"t": round(time.perf_counter() - start, 1), "rss_mb": round(rss_mb(process.pid), 1)})
    if spike_key is not None:
        with driver.lock:
            samples.append({"event": f"{args.spike} frame segmented: {spike_key not in driver.sent}"})
    return samples


def publish_spike(driver, size):
    """One large frame on camera 0, registered like the others so that its labels are matched."""
    width, height = (int(v) for v in size.split("x"))
    big = numpy_to_image(np.full((height, width, 3), 120, np.uint8), "rgb8")
    big.header.frame_id = driver.messages[0].header.frame_id
    with driver.lock:
        driver.sequence += 1
        big.header.stamp.sec = driver.sequence
        key = (0, driver.sequence)
        driver.sent[key] = time.perf_counter()
    driver.publishers[0].publish(big)
    return key


def main(argv=None):
    args = parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    namespaces = [f"/soak{i}" for i in range(args.cameras)]
    frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        process = start_node(tmp, args, args.weights, namespaces, args.max_batch_size)
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=args.domain_id)
        driver = Driver(context, namespaces, frame)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(driver.node)
        threading.Thread(target=executor.spin, daemon=True).start()
        try:
            wait_connected(driver, args.cameras)
            time.sleep(2.0)
            steady_rss = rss_mb(process.pid)
            driver.reset()
            samples = soak(driver, process, args)
            with driver.lock:
                arrivals = list(driver.arrivals)
        finally:
            stop_processes([process])
            executor.shutdown()
            driver.node.destroy_node()
            rclpy.shutdown(context=context)
    delivered = [sum(1 for *_, camera in arrivals if camera == i) for i in range(args.cameras)]
    mean = statistics.mean(delivered) or 1
    latencies = sorted(latency * 1000 for _, latency, _ in arrivals) or [0.0]
    print(json.dumps({
        "cameras": args.cameras, "rate_hz_per_camera": args.rate, "size": args.size,
        "seconds": args.seconds, "offered_fps": args.cameras * args.rate,
        "delivered_fps": round(len(arrivals) / args.seconds, 2), "delivered_per_camera": delivered,
        "share_of_mean": [round(d / mean, 3) for d in delivered],
        "latency_ms_p50": round(float(np.percentile(latencies, 50)), 1),
        "latency_ms_p99": round(float(np.percentile(latencies, 99)), 1),
        "rss_mb_before": round(steady_rss, 1), "rss": samples}, indent=2))


if __name__ == "__main__":
    main()
