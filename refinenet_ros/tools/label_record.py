"""Record what the engine outputs on a set of frames through every backend, or compare two records:
the check that a refactor keeps behaviour (labels and confidence bit for bit).

    python -m refinenet_ros.tools.label_record record --frames ../shared/data/camvid/val.txt --out before.json
    ... change the code ...
    python -m refinenet_ros.tools.label_record record --frames ../shared/data/camvid/val.txt --out after.json
    python -m refinenet_ros.tools.label_record compare before.json after.json   # exit 1 if anything differs

A record holds, per configuration (backend/precision, with or without the Nav2 label map), the
SHA-256 of every frame's labels and confidence at its own size, and of a two-frame call at a fixed
network size (the tensor path's grouping and resizing).
"""
import argparse
import hashlib
import json
import sys

CONFIGS = ("torch/fp32", "onnxruntime/fp32", "onnxruntime/int8", "openvino/fp32", "openvino/int8",
           "openvino/bf16", "torch/fp32/nav2", "onnxruntime/int8/nav2", "openvino/int8/nav2")
NAV2 = "label_maps/camvid_nav2.yaml"


def _digest(*arrays):
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str((array.dtype, array.shape)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def record(frames, configs):
    import cv2

    from ..engine import Segmenter
    from ..engine.model.shipped import config_file
    result = {}
    for config in configs:
        backend, precision, *mapped = config.split("/")
        try:
            seg = Segmenter(weights="default", device="cpu", backend=backend, precision=precision,
                            label_map=str(config_file(NAV2)) if mapped else None)
        except (ValueError, FileNotFoundError) as exc:
            result[config] = {"skipped": str(exc)}
            continue
        hashes = [_digest(r.labels, r.confidence)
                  for r in (seg.segment([frame], with_confidence=True)[0] for frame in frames)]
        pair = seg.segment([frames[0], cv2.resize(frames[-1], (320, 240))], input_size=(240, 320),
                           with_confidence=True)
        result[config] = {"frames": hashes, "sized": _digest(*(a for r in pair for a in (r.labels, r.confidence)))}
        print(f"{config}: {len(hashes)} frames", file=sys.stderr, flush=True)
    return result


def compare(before, after):
    """Lines saying what differs between two records (empty: identical)."""
    problems = []
    for config in sorted(set(before) | set(after)):
        a, b = before.get(config), after.get(config)
        if a is None or b is None or ("skipped" in a) != ("skipped" in b):
            problems.append(f"{config}: recorded in one only ({a and 'skipped' in a}, {b and 'skipped' in b})")
        elif "skipped" not in a:
            differing = sum(x != y for x, y in zip(a["frames"], b["frames"])) + abs(len(a["frames"]) - len(b["frames"]))
            if differing or a["sized"] != b["sized"]:
                problems.append(f"{config}: {differing} of {len(a['frames'])} frames differ"
                                + ("; the sized pair differs" if a["sized"] != b["sized"] else ""))
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m refinenet_ros.tools.label_record", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--frames", required=True, help="an image folder, a list file or a video")
    rec.add_argument("--count", type=int, default=1000, help="at most this many frames")
    rec.add_argument("--configs", nargs="+", default=list(CONFIGS), help=f"of {', '.join(CONFIGS)}")
    rec.add_argument("--out", required=True)
    cmp_ = sub.add_parser("compare")
    cmp_.add_argument("before")
    cmp_.add_argument("after")
    args = parser.parse_args(argv)
    if args.command == "record":
        from ..engine.frames import read_frames
        with open(args.out, "w") as f:
            json.dump(record(read_frames(args.frames, args.count), args.configs), f, indent=1)
        return 0
    with open(args.before) as f, open(args.after) as g:
        problems = compare(json.load(f), json.load(g))
    print("\n".join(problems) or "identical: every configuration, every frame")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
