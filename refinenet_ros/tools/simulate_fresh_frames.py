"""Where the fresh-frame threshold comes from: a simulation of one periodic camera feeding a
pipeline that segments one frame at a time, with and without waiting for a fresh frame.

    python -m refinenet_ros.tools.simulate_fresh_frames [--period-ms 33.3] [--jitter 0.1]

For each segmenting time (ms) and each threshold (fraction of the camera period a lone pending
frame may have waited before the pipeline waits for the camera's next one instead; 1.0 = never
wait), the time-weighted age of the newest label (from its frame's capture) and labels/s. The
camera period and the segmenting time vary by ``--camera-jitter`` and ``--jitter`` (relative
standard deviations). No ROS, no model: the rule in ``ros/intake/rules.py`` on a model of its inputs.
Prints JSON; the node's live figures are ``benchmark_freshness``'s.
"""
import argparse
import json
import sys

import numpy as np

from ..ros.intake.rules import STALE_FRACTION

THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)


def simulate(segment_ms, period_ms, threshold, labels=3000, jitter=0.1, camera_jitter=0.05,
             transport_ms=2.0, seed=0):
    """(time-weighted label age ms, labels/s) of ``labels`` labels under the rule."""
    rng = np.random.default_rng(seed)
    count = int(labels * (segment_ms / period_ms + 2)) + 100
    captured = np.cumsum(period_ms * np.clip(1 + camera_jitter * rng.standard_normal(count), 0.2, None))
    arrived = captured + transport_ms
    now, last, published = 0.0, -1, []  # published: (time, capture time of its frame)
    while len(published) < labels:
        newest = int(np.searchsorted(arrived, now, side="right")) - 1
        if newest <= last:  # nothing new pending: the next frame starts the work
            newest, now = last + 1, arrived[last + 1]
        elif now - arrived[newest] >= threshold * period_ms:  # stale: wait for the next one
            newest, now = newest + 1, max(now, arrived[newest + 1])
        last = newest
        now += segment_ms * max(0.2, 1 + jitter * rng.standard_normal())
        published.append((now, captured[newest]))
    times, captures = np.array(published).T
    starts, ends, held = times[:-1], times[1:], captures[:-1]
    area = np.sum(((ends - held) ** 2 - (starts - held) ** 2) / 2)
    span = times[-1] - times[0]
    return float(area / span), float((len(times) - 1) / span * 1000.0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--period-ms", type=float, default=1000.0 / 30)
    p.add_argument("--segment-ms", type=float, nargs="+", default=[20, 30, 40, 53, 70, 100, 200, 500])
    p.add_argument("--jitter", type=float, default=0.1)
    p.add_argument("--camera-jitter", type=float, default=0.05)
    p.add_argument("--labels", type=int, default=3000)
    args = p.parse_args(argv)
    rows = []
    for segment_ms in args.segment_ms:
        runs = {t: simulate(segment_ms, args.period_ms, t, args.labels, args.jitter, args.camera_jitter)
                for t in sorted(set(THRESHOLDS) | {STALE_FRACTION})}
        never, used = runs[1.0], runs[STALE_FRACTION]
        best = min(runs, key=lambda t: runs[t][0])
        rows.append({"segment_ms": segment_ms, "never_wait": _rounded(never),
                     "rule": {"threshold": STALE_FRACTION, **_rounded(used)},
                     "best": {"threshold": best, **_rounded(runs[best])},
                     "rule_age_vs_never": round(used[0] / never[0], 3)})
    print(json.dumps({"period_ms": args.period_ms, "rows": rows}, indent=2))
    return 0


def _rounded(run):
    return {"label_age_ms": round(run[0], 1), "labels_per_s": round(run[1], 2)}


if __name__ == "__main__":
    sys.exit(main())
