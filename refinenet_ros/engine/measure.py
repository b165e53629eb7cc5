"""The child process of :mod:`.autotune`: times one (backend, precision, weights file) candidate
through the engine end to end and prints one JSON line ({"ms": per-frame median}; with
``two_at_once`` in the spec also "ms_two_at_once": wall time per frame with two streams, each
called from its own thread, the node's way of keeping two frames in flight).

``python -m refinenet_ros.engine.measure SPEC_JSON``. Nothing imports this module: a runtime
that crashes here costs only this process. ``REFINENET_ROS_AUTOTUNE_FAULT=BACKEND`` makes that
backend's child die by SIGSEGV, so the parent's handling of a crash can be tested.
"""
import json
import os
import signal
import sys
import threading
import time

import numpy as np

WARMUP_CALLS = 2
MAX_CALLS, BUDGET_S = 15, 2.0  # timed calls: whichever limit comes first


def measure(spec):
    from .frames import synthetic_frame
    from .segmenter import Segmenter
    if spec["weights"] is None:  # torch only where the candidate needs it
        import torch
        torch.manual_seed(0)  # a random-init model is the same in every child
    if os.environ.get("REFINENET_ROS_AUTOTUNE_FAULT") == spec["backend"]:
        os.kill(os.getpid(), signal.SIGSEGV)
    height, width = spec["size"]
    segmenter = Segmenter(arch=spec["arch"] or "mbv2", weights=spec["weights"], device="cpu",
                          precision=spec["precision"], backend=spec["backend"],
                          model_info=spec.get("model_info"), input_size=(height, width))
    frame = [synthetic_frame(height, width)]
    for _ in range(WARMUP_CALLS):
        result = segmenter.segment(frame, overlay_alpha=0.5)
    times, started = [], time.perf_counter()
    while len(times) < MAX_CALLS and time.perf_counter() - started < BUDGET_S:
        begin = time.perf_counter()
        segmenter.segment(frame, overlay_alpha=0.5)
        times.append(time.perf_counter() - begin)
    np.save(spec["labels_out"], result[0].labels)
    figures = {"ms": round(1000 * float(np.median(times)), 2), "calls": len(times)}
    if spec.get("two_at_once"):
        del segmenter  # its compiled graphs: one model in memory at a time
        figures["ms_two_at_once"] = _two_at_once(spec, frame)
    return figures


def _two_at_once(spec, frame):
    """Wall ms per frame with two streams, each kept busy by its own thread for BUDGET_S."""
    from .segmenter import Segmenter
    segmenter = Segmenter(arch=spec["arch"] or "mbv2", weights=spec["weights"], device="cpu",
                          precision=spec["precision"], backend=spec["backend"],
                          model_info=spec.get("model_info"),
                          input_size=tuple(spec["size"]), streams=2)

    def call():
        segmenter.segment(frame, overlay_alpha=0.5)

    _on_two_threads(lambda: [call() for _ in range(WARMUP_CALLS)])  # both streams warm
    done, started = [], time.perf_counter()

    def busy():
        while time.perf_counter() - started < BUDGET_S:
            call()
            done.append(1)

    _on_two_threads(busy)
    return round(1000 * (time.perf_counter() - started) / len(done), 2)


def _on_two_threads(work):
    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))
