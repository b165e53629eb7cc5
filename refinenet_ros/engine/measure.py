"""The child process of :mod:`.autotune`: times one (backend, precision, weights file) candidate
through the engine end to end and prints one JSON line ({"ms": per-frame median}).

``python -m refinenet_ros.engine.measure SPEC_JSON``. Nothing imports this module: a runtime
that crashes here costs only this process. ``REFINENET_ROS_AUTOTUNE_FAULT=BACKEND`` makes that
backend's child die by SIGSEGV, so the parent's handling of a crash can be tested.
"""
import json
import os
import signal
import sys
import time

import numpy as np

WARMUP_CALLS = 2
MAX_CALLS, BUDGET_S = 15, 2.0  # timed calls: whichever limit comes first


def measure(spec):
    import torch
    from .frames import synthetic_frame
    from .segmenter import Segmenter
    torch.manual_seed(0)  # a random-init model is the same in every child
    if os.environ.get("REFINENET_ROS_AUTOTUNE_FAULT") == spec["backend"]:
        os.kill(os.getpid(), signal.SIGSEGV)
    height, width = spec["size"]
    segmenter = Segmenter(arch=spec["arch"] or "mbv2", weights=spec["weights"], device="cpu",
                          precision=spec["precision"], backend=spec["backend"], input_size=(height, width))
    frame = [synthetic_frame(height, width)]
    for _ in range(WARMUP_CALLS):
        result = segmenter.segment(frame, overlay_alpha=0.5)
    times, started = [], time.perf_counter()
    while len(times) < MAX_CALLS and time.perf_counter() - started < BUDGET_S:
        begin = time.perf_counter()
        segmenter.segment(frame, overlay_alpha=0.5)
        times.append(time.perf_counter() - begin)
    np.save(spec["labels_out"], result[0].labels)
    return {"ms": round(1000 * float(np.median(times)), 2), "calls": len(times)}


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))
