"""``refinenet-eval``: per-class IoU, mIoU, pixel accuracy and confusion matrix on a list file.

It segments through the same :class:`refinenet_ros.Segmenter` the node uses (fused model,
chosen precision, logits upsampled to each label's size), so what it measures is what ships.
Optional test-time multi-scale and flip averaging (``--scales 0.75 1 1.25 --flip``).
"""
import argparse
import json
import sys
import time

import numpy as np

from . import metrics
from .data import read_image_rgb, read_label, read_list


def validate(model, loader, num_classes, ignore_index, device, amp_dtype):
    """Validation during training: the confusion matrix of the (unfused) ``model`` at each
    label's own resolution (bilinear logits upsampling)."""
    import torch  # here, so that `refinenet-eval --help` stays quick
    import torch.nn.functional as F

    from ..models import normalize_images
    model.eval()
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    with torch.no_grad():
        for images, labels in loader:
            images = normalize_images(images.to(device)).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(images)
            logits = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
            predicted = logits.max(1)[1]  # max(1): argmax over NCHW channels is much slower on CPUs
            confusion += metrics.confusion_matrix(labels, predicted.cpu(), num_classes, ignore_index)
    return confusion


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="refinenet-eval", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--list", help="list file of 'IMAGE LABEL' lines: IoU and accuracy")
    source.add_argument("--images", metavar="SOURCE",
                        help="unlabelled frames (image folder, list file or video): the confidence "
                             "profile and class shares only, e.g. to see how far footage is from "
                             "the training domain")
    p.add_argument("--confidence", action="store_true",
                   help="with --list: also the calibration table (accuracy per confidence bin)")
    p.add_argument("--weights", default="default", help="checkpoint (.pth/.onnx) or 'default'")
    p.add_argument("--arch", default=None, help="architecture (default: the Segmenter's; the shipped model's for 'default')")
    p.add_argument("--num-classes", type=int, default=None, help="default: inferred from the weights")
    p.add_argument("--ignore-index", type=int, default=255)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--input-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="network input size (default: each image's own size)")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0])
    p.add_argument("--flip", action="store_true")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--limit", type=int, default=None,
                   help="evaluate only the first N pairs (--images: N frames spread evenly, default 40)")
    p.add_argument("--json", default=None, help="write the results here")
    return p.parse_args(argv)


def evaluate_pairs(segmenter, pairs, ignore_index, batch_size=4, bins=None):
    """Confusion matrix of ``segmenter`` over ``(image_path, label_path)`` pairs; with
    ``bins`` (:class:`metrics.ConfidenceBins`) also its calibration on the labelled pixels."""
    n = segmenter.num_classes
    confusion = np.zeros((n, n), dtype=np.int64)
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        images = [read_image_rgb(image_path) for image_path, _ in chunk]
        for (_, label_path), result in zip(chunk, segmenter.segment(images, with_confidence=bins is not None)):
            label = read_label(label_path)
            if label.shape != result.labels.shape:
                raise ValueError(f"{label_path}: label {label.shape} and prediction "
                                 f"{result.labels.shape} differ in size")
            confusion += metrics.confusion_matrix(label, result.labels, n, ignore_index)
            if bins is not None:
                valid = (label != ignore_index) & (label < n)
                bins.add(result.confidence, label == result.labels, valid)
    return confusion


def profile_frames(segmenter, frames, batch_size=4):
    """Confidence bins and pixels per class of ``segmenter`` over unlabelled RGB ``frames``."""
    bins, class_pixels = metrics.ConfidenceBins(), np.zeros(segmenter.num_classes, np.int64)
    for start in range(0, len(frames), batch_size):
        for result in segmenter.segment(frames[start:start + batch_size], with_confidence=True):
            bins.add(result.confidence)
            class_pixels += np.bincount(result.labels.ravel(), minlength=segmenter.num_classes)
    return bins, class_pixels


def summarize(confusion, class_names):
    """The results as a JSON-ready dict: per-class IoU, mIoU, accuracies, confusion matrix."""
    result = metrics.scores(confusion)
    return {
        "miou": result["miou"],
        "pixel_accuracy": result["pixel_accuracy"],
        "mean_class_accuracy": result["mean_class_accuracy"],
        "per_class_iou": {name: (None if np.isnan(v) else v) for name, v in zip(class_names, result["iou"])},
        "confusion_matrix": np.asarray(confusion).tolist(),
        "class_names": list(class_names),
    }


def format_table(summary):
    width = max(len(n) for n in summary["class_names"]) + 2
    lines = [f"{'class':<{width}} IoU %", "-" * (width + 8)]
    for name, iou in summary["per_class_iou"].items():
        lines.append(f"{name:<{width}} {'  n/a' if iou is None else f'{100 * iou:6.2f}'}")
    lines += ["-" * (width + 8),
              f"{'mIoU':<{width}} {100 * summary['miou']:6.2f}",
              f"{'pixel acc':<{width}} {100 * summary['pixel_accuracy']:6.2f}",
              f"{'mean acc':<{width}} {100 * summary['mean_class_accuracy']:6.2f}"]
    return "\n".join(lines)


def format_confidence(confidence):
    lines = [f"mean top-class confidence {confidence['mean_confidence']:.3f}, "
             f"{100 * confidence['share_below_0.5']:.1f}% of pixels below 0.5",
             "confidence   pixels %" + ("   accuracy %" if "expected_calibration_error" in confidence else "")]
    for row in confidence["bins"]:
        accuracy = f"   {100 * row['accuracy']:10.1f}" if "accuracy" in row else ""
        lines.append(f"{row['from']:.1f}-{row['to']:.1f}    {100 * row['share']:8.2f}{accuracy}")
    if "expected_calibration_error" in confidence:
        lines.append(f"expected calibration error {100 * confidence['expected_calibration_error']:.2f}%")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    from ..engine.segmenter import (
        Segmenter,  # torch import deferred until the arguments are valid
    )

    arch = {"arch": args.arch} if args.arch else {}
    segmenter = Segmenter(**arch, weights=args.weights, num_classes=args.num_classes,
                          device=args.device, precision=args.precision,
                          input_size=tuple(args.input_size) if args.input_size else None,
                          scales=tuple(args.scales), flip=args.flip)
    started = time.perf_counter()
    if args.images:
        summary = _profile_images(segmenter, args)
    else:
        pairs = read_list(args.list)[:args.limit]
        bins = metrics.ConfidenceBins() if args.confidence else None
        summary = summarize(evaluate_pairs(segmenter, pairs, args.ignore_index, args.batch_size, bins),
                            segmenter.class_names)
        summary["images"] = len(pairs)
        print(format_table(summary))
        if bins is not None:
            summary["confidence"] = bins.summary(labelled=True)
            print(format_confidence(summary["confidence"]))
    seconds = time.perf_counter() - started
    summary.update(seconds=round(seconds, 2), weights=args.weights, arch=segmenter.arch,
                   device=str(segmenter.device), precision=segmenter.precision, scales=args.scales,
                   flip=args.flip)
    print(f"{summary['images']} images in {seconds:.1f} s on {segmenter.device} ({segmenter.precision})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return 0


def _profile_images(segmenter, args):
    from ..engine.frames import read_frames
    try:
        frames = read_frames(args.images, args.limit or 40)
    except (OSError, ValueError) as exc:
        sys.exit(f"refinenet-eval: {exc}")
    bins, class_pixels = profile_frames(segmenter, frames, args.batch_size)
    shares = class_pixels / max(int(class_pixels.sum()), 1)
    summary = {"images": len(frames), "source": str(args.images), "confidence": bins.summary(labelled=False),
               "class_shares": {name: float(v) for name, v in zip(segmenter.class_names, shares)}}
    print(format_confidence(summary["confidence"]))
    print("classes: " + ", ".join(f"{name} {100 * v:.1f}%" for name, v in
                                  sorted(summary["class_shares"].items(), key=lambda kv: -kv[1]) if v > 0))
    return summary


if __name__ == "__main__":
    sys.exit(main())
