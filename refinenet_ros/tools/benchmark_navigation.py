"""Cost of the navigation outputs per frame: the semantic point cloud (depth to metres,
projection, PointCloud2 packing) and class-group masks, beside the engine's own time for the
same frame in the same run (the machine may be shared: compare the ratio).

    python -m refinenet_ros.tools.benchmark_navigation [--size 640x480] [--iterations 20]

Prints JSON: median ms per frame for each output and as a fraction of the engine's time.
"""
import argparse
import json
import statistics
import time
from types import SimpleNamespace

import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from ..engine import Segmenter
from ..ros.conversions import numpy_to_image
from ..ros.navigation import cloud, mask, parse_mask_groups

GROUPS = ["drivable: road, pavement", "obstacle: car, pedestrian, bicyclist, pole, fence"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="640x480", help="WxH")
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--weights", default="default")
    p.add_argument("--stride", type=int, default=1)
    return p.parse_args(argv)


def median_ms(fn, iterations):
    fn()  # warm-up
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(argv=None):
    args = parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (height, width, 3), np.uint8)
    segmenter = Segmenter(weights=args.weights, device="cpu")
    result = segmenter.segment([frame], with_confidence=True)[0]
    depth = numpy_to_image(rng.integers(300, 8000, (height, width)).astype(np.uint16), "16UC1")
    info = CameraInfo(width=width, height=height, k=[500.0, 0, width / 2, 0, 500.0, height / 2, 0, 0, 1])
    settings = SimpleNamespace(depth_min_m=0.1, depth_max_m=20.0, cloud_stride=args.stride)
    groups = parse_mask_groups(GROUPS, segmenter.class_names)
    header = Image().header
    engine = median_ms(lambda: segmenter.segment([frame], with_confidence=True), max(3, args.iterations // 4))
    points = median_ms(lambda: cloud(header, depth, info, result, settings), args.iterations)
    masks = median_ms(lambda: [numpy_to_image(mask(result.labels, ids), "mono8", header)
                               for ids in groups.values()], args.iterations)
    print(json.dumps({
        "size": args.size, "cloud_stride": args.stride, "engine_ms": round(engine, 1),
        "point_cloud_ms": round(points, 2), "point_cloud_vs_engine": round(points / engine, 3),
        "two_masks_ms": round(masks, 2), "two_masks_vs_engine": round(masks / engine, 3)}, indent=2))


if __name__ == "__main__":
    main()
