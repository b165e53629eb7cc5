"""refinenet-benchmark: the engine against a naive baseline, measured in the same run.

The baseline is the reference implementation's style: the unfused fp32 NCHW model called
frame by frame, with pre/post-processing in numpy on the CPU (cv2 resize, /255, normalise,
transpose, forward, bilinear upsampling, argmax, palette lookup). Both run the same weights
on the same frames; iterations alternate between them so that load from other processes
hits both alike. Prints one JSON object.
"""
import argparse
import json
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..choices import BACKENDS
from ..engine import Segmenter
from ..engine.frames import synthetic_frame
from ..models import IMAGENET_MEAN, IMAGENET_STD, create_model, load_checkpoint

AGREEMENT_FRAMES = 16  # real frames checked for label agreement with the fp32 baseline


class NaiveSegmenter:
    """Frame-by-frame reference pipeline (fp32, unfused, NCHW, numpy pre/post-processing)."""

    def __init__(self, model, palette, input_size=None, device="cpu"):
        self.model = model.float().eval().to(device)
        self.palette = palette
        self.input_size = input_size
        self.device = device
        self.mean = np.array(IMAGENET_MEAN, np.float32)
        self.std = np.array(IMAGENET_STD, np.float32)

    def segment_one(self, frame):
        import cv2
        image = frame
        if self.input_size is not None and self.input_size != frame.shape[:2]:
            image = cv2.resize(frame, self.input_size[::-1], interpolation=cv2.INTER_LINEAR)
        x = (image.astype(np.float32) / 255.0 - self.mean) / self.std
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))[None]).to(self.device)
        with torch.no_grad():
            logits = self.model(x)
            logits = F.interpolate(logits, size=frame.shape[:2], mode="bilinear", align_corners=False)
        labels = logits.argmax(1)[0].cpu().numpy().astype(np.uint8)
        return labels, self.palette[labels]


def _timed(fn, sync):
    """(wall seconds, this process's CPU seconds) of one call."""
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    sync()
    return time.perf_counter() - wall, time.process_time() - cpu


def _summary(times, batch):
    ms = np.array([wall for wall, _ in times]) * 1000.0
    cpu_ms = np.array([cpu for _, cpu in times]) * 1000.0
    # CPU time per batch (all threads) is steadier than wall time on a shared machine.
    return {"frames_per_s": round(batch * len(ms) / (ms.sum() / 1000.0), 2),
            "p50_ms_per_batch": round(float(np.percentile(ms, 50)), 2),
            "p99_ms_per_batch": round(float(np.percentile(ms, 99)), 2),
            "cpu_ms_per_batch_p50": round(float(np.percentile(cpu_ms, 50)), 2)}


def synthetic_frames(batch, height, width, seed=0):
    """Smooth colour gradients with noise: enough structure for label agreement to mean something."""
    return [synthetic_frame(height, width, seed + i) for i in range(batch)]


def benchmark_frames(args):
    """(timed frames, frames checked for agreement): real ones from --frames, else synthetic."""
    if not args.frames:
        frames = synthetic_frames(args.batch, args.height, args.width)
        return frames, frames
    from ..engine.frames import read_frames  # real frames: label agreement means what it says
    frames = read_frames(args.frames, args.batch)
    args.height, args.width = frames[0].shape[:2]
    return frames, read_frames(args.frames, max(args.batch, AGREEMENT_FRAMES))


def run(args):
    random_init = args.weights is None
    if random_init:  # one random model for both pipelines
        handle = tempfile.NamedTemporaryFile(suffix=".pth", delete=False)
        torch.save(create_model(args.arch, args.num_classes).state_dict(), handle.name)
        args.weights = args.engine_weights = handle.name
    device = args.device
    engine = Segmenter(arch=args.arch, weights=args.engine_weights, num_classes=args.num_classes, device=device,
                       precision=args.precision, input_size=args.input_size, compile=args.compile,
                       backend=args.backend)
    model = load_checkpoint(create_model(engine.arch, engine.num_classes), args.weights)
    baseline = NaiveSegmenter(model, engine.palette, args.input_size, engine.device)
    frames, checked = benchmark_frames(args)
    sync = torch.cuda.synchronize if engine.device.type == "cuda" else (lambda: None)

    engine_times, baseline_times = [], []
    for _ in range(args.warmup):
        engine.segment(frames)
        [baseline.segment_one(f) for f in frames]
    for _ in range(args.iterations):  # alternate, so background load hits both alike
        engine_times.append(_timed(lambda: engine.segment(frames), sync))
        baseline_times.append(_timed(lambda: [baseline.segment_one(f) for f in frames], sync))

    ours = [r.labels for f in checked for r in engine.segment([f])]
    reference = [baseline.segment_one(f)[0] for f in checked]
    agreement = np.mean([np.mean(labels == ref) for labels, ref in zip(ours, reference)])
    result = {
        "arch": engine.arch, "weights": "random-init" if random_init else args.engine_weights, "num_classes": engine.num_classes,
        "height": args.height, "width": args.width, "batch": args.batch,
        "device": str(engine.device), "precision": engine.precision, "compiled": args.compile, "backend": engine.backend,
        "torch_threads": torch.get_num_threads(), "iterations": args.iterations,
        "engine": _summary(engine_times, args.batch),
        "baseline": _summary(baseline_times, args.batch),
    }
    result["speedup"] = round(result["engine"]["frames_per_s"] / result["baseline"]["frames_per_s"], 2)
    result["speedup_cpu_time"] = round(result["baseline"]["cpu_ms_per_batch_p50"]
                                       / max(result["engine"]["cpu_ms_per_batch_p50"], 1e-6), 2)
    result["label_agreement_percent"] = round(100.0 * float(agreement), 3)
    result["agreement_frames"] = f"{len(checked)} {'from ' + args.frames if args.frames else 'synthetic'}"
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="refinenet-benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="mbv2")
    parser.add_argument("--weights", default=None,
                        help="checkpoint path, 'default' for the shipped model; random init if omitted")
    parser.add_argument("--reference-weights", metavar="CHECKPOINT",
                        help="the .pth checkpoint the naive baseline runs when --weights is an .onnx export")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classes of a random-init model (default 11, as CamVid)")
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--input-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="network input size (default: native frame size)")
    parser.add_argument("--frames", metavar="SOURCE",
                        help="real frames (a folder of images or a list file such as CamVid's val.txt) "
                             f"instead of synthetic ones; agreement is then measured on {AGREEMENT_FRAMES}")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", help="auto | fp32 | bf16 | fp16 | int8")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="torch.compile the engine's model")
    parser.add_argument("--backend", default="auto", choices=BACKENDS,
                        help="the engine's backend (auto: the fastest measured, engine/planning/plan.py)")
    parser.add_argument("--all-backends", action="store_true",
                        help="every installed backend and precision for these weights on this CPU, and "
                             "auto's choice: model alone, engine end to end, agreement (one run)")
    args = parser.parse_args(argv)
    if args.weights is None and args.num_classes is None:
        args.num_classes = 11
    args.engine_weights = args.weights  # "default" stays: with --precision int8 it means the shipped int8 model
    if args.weights == "default":
        from ..engine.model.shipped import resolve_weights
        args.weights = resolve_weights("default")[0]  # the fp32 checkpoint: the baseline's weights
    elif args.weights is not None and args.weights.lower().endswith(".onnx"):
        if not args.reference_weights:
            parser.error("an .onnx engine model needs --reference-weights CHECKPOINT for the fp32 baseline")
        args.weights = args.reference_weights
    if min(args.height, args.width, args.batch, args.iterations) < 1 or args.warmup < 0:
        parser.error("--height, --width, --batch and --iterations must be >= 1, --warmup >= 0")
    args.input_size = tuple(args.input_size) if args.input_size else None
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.all_backends:
        from .benchmark_backends import run_all
        if args.engine_weights is None:
            parser_error = "--all-backends needs --weights (a checkpoint, an export or 'default')"
            raise SystemExit(parser_error)
        frames, checked = benchmark_frames(args)
        result = {"weights": args.engine_weights, "height": args.height, "width": args.width,
                  "batch": args.batch, "iterations": args.iterations, **run_all(args, frames, checked)}
        print(json.dumps(result, indent=2))
        return
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
