"""What the temporal filter (engine/processing/temporal.py) does to labels: flicker, accuracy, lag
and cost, with the filter against without on the same frames in one run. Prints JSON.

    python -m refinenet_ros.tools.benchmark_temporal --frames ../shared/data/camvid/val.txt [--video V]

- fixed camera (``--video``, default the demo's street footage): the share of pixels whose label
  changes between consecutive frames where the image itself did not change;
- moving camera with ground truth: CamVid val frames made into clips by a known smooth camera
  motion (shift, small zoom and rotation), sensor noise and brightness changes, the ground truth
  moved with them: mIoU against the ground truth, and flicker against the known motion;
- lag: a car cut from one frame and moved across another: frames after it appears until its IoU
  is within 1 point of the per-frame result;
- cost: ms per frame of the filter at 640x480 beside the engine's ms per frame.
"""
import argparse
import json
import pathlib
import time

import cv2
import numpy as np

from ..engine import Segmenter
from ..engine.processing.temporal import TemporalFilter
from .demo_render import FlickerCount

CAR, VOID = 8, 11  # CamVid's car class and the label of its unlabelled pixels


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", required=True, help="CamVid's val.txt (images and their annotations)")
    p.add_argument("--video", help="a fixed camera's video (default: the demo's footage)")
    p.add_argument("--video-frames", type=int, default=120)
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--clip-length", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def labelled_frames(list_file):
    """The RGB images and annotations of a CamVid list file ("image annotation" per line)."""
    root, images, truths = pathlib.Path(list_file).parent, [], []
    for line in pathlib.Path(list_file).read_text().splitlines():
        if len(line.split()) >= 2:
            image, annotation = (root / part.lstrip("/") for part in line.split()[:2])
            images.append(cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB))
            truths.append(cv2.imread(str(annotation), cv2.IMREAD_GRAYSCALE))
    return images, truths


def consecutive_frames(video, count):
    """The first ``count`` frames of ``video``, one after the other, as RGB."""
    capture, frames = cv2.VideoCapture(str(video)), []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    if len(frames) < 2:
        raise SystemExit(f"benchmark_temporal: cannot read two frames of {video}")
    return frames


def per_frame(seg, frames):
    return [seg.segment([f], with_confidence=True)[0] for f in frames]


def filtered(results, frames, rate=30.0):
    temporal, out, spent = TemporalFilter(), [], []
    for k, (result, frame) in enumerate(zip(results, frames)):
        started = time.perf_counter()
        out.append(temporal("camera", frame, result.labels, result.confidence, k / rate)[0])
        spent.append(time.perf_counter() - started)
    return out, 1000 * float(np.median(spent))


def still_flicker(frames, labels):
    """Share of pixels whose image did not change (5x5 neighbourhood) but whose label did."""
    count = FlickerCount()
    for frame, frame_labels in zip(frames, labels):
        count.add(frame, frame_labels)
    return count.changed / max(count.still, 1)


def clip(image, truth, length, rng):
    """A clip of ``image`` moved by a smooth camera motion, with noise, and its moved ``truth``."""
    h, w = truth.shape
    velocity = rng.normal(0, 2.0, 2)
    zoom, turn = rng.normal(0, 0.004), rng.normal(0, 0.15)
    frames, truths, motions = [], [], []
    for t in range(length):
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), turn * t, 1.0 + zoom * t)
        matrix[:, 2] += velocity * t
        frame = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        noisy = frame * rng.uniform(0.95, 1.05) + rng.normal(0, 4, frame.shape)
        frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
        truths.append(cv2.warpAffine(truth, matrix, (w, h), flags=cv2.INTER_NEAREST, borderValue=VOID))
        motions.append(matrix)
    return frames, truths, motions


def moved_flicker(labels, motions):
    """Share of pixels that disagree with the previous frame's labels moved by the known motion."""
    changed = total = 0
    for (prev, cur), (m_prev, m_cur) in zip(zip(labels, labels[1:]), zip(motions, motions[1:])):
        step = np.vstack([m_cur, [0, 0, 1]]) @ np.linalg.inv(np.vstack([m_prev, [0, 0, 1]]))
        h, w = cur.shape
        moved = cv2.warpAffine(prev, step[:2], (w, h), flags=cv2.INTER_NEAREST, borderValue=255)
        valid = moved != 255
        changed, total = changed + int((valid & (moved != cur)).sum()), total + int(valid.sum())
    return changed / max(total, 1)


def miou(pairs, classes=11):
    inter, union = np.zeros(classes), np.zeros(classes)
    for labels, truth in pairs:
        keep = truth != VOID
        for c in range(classes):
            a, b = (labels == c) & keep, (truth == c) & keep
            inter[c], union[c] = inter[c] + (a & b).sum(), union[c] + (a | b).sum()
    present = union > 0
    return float(np.mean(inter[present] / union[present]))


def car_iou(labels, truth):
    return ((labels == CAR) & (truth == CAR)).sum() / max(((labels == CAR) | (truth == CAR)).sum(), 1)


def lag(seg, images, truths, length=16, step=6):
    """Frames until the filtered car IoU is within 1 point of the per-frame one, after it appears."""
    donor = max(range(len(truths)), key=lambda i: (truths[i] == CAR).sum())
    mask = truths[donor] == CAR
    ys, xs = np.nonzero(mask)
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    car, car_mask = images[donor][box], mask[box]
    background = min(range(len(truths)), key=lambda i: (truths[i] == CAR).sum())
    frames, truth_frames = [], []
    for t in range(length):
        frame, truth = images[background].copy(), truths[background].copy()
        if t >= length // 4:  # the car drives in
            x = (t - length // 4) * step
            region = (slice(frame.shape[0] - car.shape[0], frame.shape[0]), slice(x, x + car.shape[1]))
            width = frame[region].shape[1]
            frame[region][car_mask[:, :width]] = car[:, :width][car_mask[:, :width]]
            truth[region][car_mask[:, :width]] = CAR
        frames.append(frame)
        truth_frames.append(truth)
    results = per_frame(seg, frames)
    plain = [r.labels for r in results]
    smooth, _ = filtered(results, frames)
    for t in range(length // 4, length):
        if car_iou(smooth[t], truth_frames[t]) >= car_iou(plain[t], truth_frames[t]) - 0.01:
            return t - length // 4
    return None


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    seg = Segmenter(weights="default", device="cpu")
    report = {"engine": f"{seg.backend}/{seg.precision}"}
    video = args.video
    if video is None:
        from .footage import demo_footage
        video = str(demo_footage())
    still = [cv2.resize(f, (640, 480)) for f in consecutive_frames(video, args.video_frames)]
    started = time.perf_counter()
    results = per_frame(seg, still)
    engine_ms = 1000 * (time.perf_counter() - started) / len(still)
    smooth, filter_ms = filtered(results, still, rate=10.0)
    plain = [r.labels for r in results]
    report["fixed_camera"] = {"video": video, "frames": len(still),
                              "flicker": round(still_flicker(still, plain), 5),
                              "flicker_filtered": round(still_flicker(still, smooth), 5)}
    report["cost_640x480"] = {"filter_ms": round(filter_ms, 2), "engine_ms": round(engine_ms, 1),
                              "share": round(filter_ms / (engine_ms + filter_ms), 4)}
    images, truths = labelled_frames(args.frames)
    pairs_plain, pairs_smooth, flicker = [], [], {"plain": [], "filtered": []}
    for k in rng.choice(len(images), size=min(args.clips, len(images)), replace=False):
        frames, moved_truths, motions = clip(images[k], truths[k], args.clip_length, rng)
        results = per_frame(seg, frames)
        plain, smooth = [r.labels for r in results], filtered(results, frames)[0]
        pairs_plain += list(zip(plain, moved_truths))
        pairs_smooth += list(zip(smooth, moved_truths))
        flicker["plain"].append(moved_flicker(plain, motions))
        flicker["filtered"].append(moved_flicker(smooth, motions))
    report["moving_clips"] = {"clips": args.clips, "length": args.clip_length,
                              "miou": round(100 * miou(pairs_plain), 2),
                              "miou_filtered": round(100 * miou(pairs_smooth), 2),
                              "flicker": round(float(np.mean(flicker["plain"])), 5),
                              "flicker_filtered": round(float(np.mean(flicker["filtered"])), 5)}
    report["lag_frames"] = lag(seg, images, truths)
    for part in ("fixed_camera", "moving_clips"):
        figures = report[part]
        figures["flicker_reduction"] = round(1 - figures["flicker_filtered"] / max(figures["flicker"], 1e-9), 3)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
