"""Turn a training checkpoint into shipped weights: a bare fp16 state_dict (half the size;
the engine loads it into fp32 or casts as configured), checked to load strictly.

    python -m refinenet_ros.training.ship --checkpoint runs/x/final.pth --arch mbv2 \
        --output models/camvid_mbv2.pth

With ``--metadata models/camvid_mbv2.json --evaluation EVAL.json`` it also records a
``refinenet-eval --json`` result (mIoU, pixel accuracy, per-class IoU) as the model's
``evaluation``, with ``--evaluation-split`` saying what was evaluated, and ``--training`` as its
``training`` line; the rest of the metadata (classes, palette, ...) is kept.
"""
import argparse
import json
import os
import re
import sys

import torch

from ..models import create_model, load_checkpoint, num_classes_in, read_state_dict


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m refinenet_ros.training.ship", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--arch", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--fp32", action="store_true", help="keep fp32 instead of fp16")
    p.add_argument("--metadata", help="model metadata JSON to update (e.g. models/camvid_mbv2.json)")
    p.add_argument("--evaluation", metavar="EVAL_JSON", help="refinenet-eval --json result to record")
    p.add_argument("--evaluation-split", help="what the evaluation measured (images, and which weights)")
    p.add_argument("--training", help="one line on how the weights were trained")
    args = p.parse_args(argv)
    if (args.evaluation or args.training) and not args.metadata:
        p.error("--evaluation and --training need --metadata")
    if bool(args.evaluation) != bool(args.evaluation_split):
        p.error("--evaluation and --evaluation-split go together")
    return args


def main(argv=None):
    args = parse_args(argv)
    state_dict = read_state_dict(args.checkpoint)
    model = load_checkpoint(create_model(args.arch, num_classes_in(state_dict)), state_dict)
    dtype = torch.float32 if args.fp32 else torch.float16
    shipped = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    metadata = updated_metadata(args) if args.metadata else None  # read everything before writing
    tmp = args.output + ".tmp"
    torch.save(shipped, tmp)
    load_checkpoint(create_model(args.arch, num_classes_in(shipped)), tmp)  # strict check of the file
    os.replace(tmp, args.output)
    print(f"wrote {args.output} ({os.path.getsize(args.output) / 1e6:.1f} MB, {dtype})")
    if metadata is not None:
        write_json_atomic(metadata, args.metadata)
        print(f"updated {args.metadata}")
    return 0


def updated_metadata(args):
    """The metadata file's content with ``evaluation`` and ``training`` replaced as asked."""
    with open(args.metadata) as f:
        metadata = json.load(f)
    if args.evaluation:
        with open(args.evaluation) as f:
            result = json.load(f)
        missing = {"miou", "pixel_accuracy", "per_class_iou", "class_names"} - set(result)
        if missing:
            sys.exit(f"ship: {args.evaluation} is not a refinenet-eval --json result with labels "
                     f"(no {', '.join(sorted(missing))})")
        if result["class_names"] != metadata.get("classes"):
            sys.exit(f"ship: {args.evaluation} names classes {result['class_names']}, "
                     f"{args.metadata} {metadata.get('classes')}")
        metadata["evaluation"] = {
            "split": args.evaluation_split,
            "miou": round(result["miou"], 4),
            "pixel_accuracy": round(result["pixel_accuracy"], 4),
            "per_class_iou": {name: None if iou is None else round(iou, 4)
                              for name, iou in result["per_class_iou"].items()},
        }
    if args.training:
        metadata["training"] = args.training
    return metadata


def write_json_atomic(obj, path):
    text = json.dumps(obj, indent=2)
    # lists of numbers (palette rows, input size) on one line each, as the file is written by hand
    text = re.sub(r"\[\s*(-?\d+(?:,\s*-?\d+)*)\s*\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
