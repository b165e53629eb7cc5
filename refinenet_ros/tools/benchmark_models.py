"""Model speed benchmark: ms/frame per architecture, input size and inference mode.

    python -m refinenet_ros.tools.benchmark_models                       # the 4 Light-Weight archs
    python -m refinenet_ros.tools.benchmark_models --archs all --iterations 20
    python -m refinenet_ros.tools.benchmark_models --archs mbv2 --modes unfused_fp32 fused_fp32

Modes: ``unfused_fp32`` (the training model in eval mode, NCHW), ``fused_fp32`` and
``fused_bf16`` / ``fused_fp16`` (:func:`fuse_for_inference`: BN folded, channels_last, cast).
The modes of one (arch, size) are timed round-robin, one forward each per round, so load
from other processes hits them alike; every mode is reported as a speed-up over
``unfused_fp32`` measured in the same run. Prints one JSON line per (arch, size) and, at
the end, one JSON document with the environment and every result (also to ``--output``).

GFLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one frame, on the meta
device (no compute): 2 per multiply-accumulate of convolutions and matmuls; pooling, sums
and resizes are not counted.
bf16 is native only where the CPU has AMX or AVX512-BF16; on an AVX2-only CPU it is emulated
and several times slower than fp32 -- the ``cpu`` entry says which this machine has.
"""
import argparse
import json
import pathlib
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..engine.hardware.cpu import cpu_info
from ..models import MODEL_BUILDERS, count_parameters, create_model, fuse_for_inference

LIGHTWEIGHT_ARCHS = ("mbv2", "rf_lw50", "rf_lw101", "rf_lw152")
MODES = ("unfused_fp32", "fused_fp32", "fused_bf16", "fused_fp16")
DEFAULT_MODES = ("unfused_fp32", "fused_fp32", "fused_bf16")
BASELINE = "unfused_fp32"


def parse_size(text):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW (e.g. 360x480), got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return h, w


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m refinenet_ros.tools.benchmark_models",
        description="ms/frame of each model (unfused fp32 / fused fp32 / fused bf16), params, GFLOPs.")
    parser.add_argument("--archs", nargs="+", default=list(LIGHTWEIGHT_ARCHS),
                        help=f"architectures, or 'all' (default: {' '.join(LIGHTWEIGHT_ARCHS)}; "
                             f"known: {' '.join(MODEL_BUILDERS)})")
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(360, 480), (512, 512)],
                        metavar="HxW", help="input sizes (default: 360x480 512x512)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(DEFAULT_MODES),
                        help=f"inference modes (default: {' '.join(DEFAULT_MODES)})")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--iterations", type=int, default=10, help="timed forwards per mode (default: 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed forwards per mode first (default: 2)")
    parser.add_argument("--batch", type=int, default=1, help="frames per forward (default: 1)")
    parser.add_argument("--num-classes", type=int, default=21, help="classifier width (default: 21)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--output", type=pathlib.Path, help="also write the JSON document here")
    args = parser.parse_args(argv)
    if args.archs == ["all"]:
        args.archs = list(MODEL_BUILDERS)
    unknown = [a for a in args.archs if a not in MODEL_BUILDERS]
    if unknown:
        parser.error(f"unknown arch {', '.join(unknown)}; choose from {', '.join(MODEL_BUILDERS)} or all")
    for name in ("threads", "iterations", "batch", "num_classes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if BASELINE not in args.modes:
        args.modes.insert(0, BASELINE)  # every ratio needs the baseline from the same run
    return args


def cpu_description():
    info = cpu_info()
    return {"model": info.model, "class": info.cpu_class, "native_bf16": info.native_bf16,
            "capability": torch.backends.cpu.get_cpu_capability()}


def count_gflops(arch, num_classes, size):
    """GFLOPs of one frame, counted on a weightless (meta device) copy: no compute needed."""
    with torch.device("meta"):
        model = create_model(arch, num_classes).eval()
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.empty(1, 3, *size, device="meta"))
    return counter.get_total_flops() / 1e9


def prepare_modes(model, modes, example):
    """(module, input) per mode; fused modes share one fused copy per dtype."""
    prepared = {}
    fused = fuse_for_inference(model) if "fused_fp32" in modes else None
    for mode in modes:
        if mode == "unfused_fp32":
            prepared[mode] = (model, example)
            continue
        dtype = {"fused_fp32": torch.float32, "fused_bf16": torch.bfloat16,
                 "fused_fp16": torch.float16}[mode]
        module = fused if dtype == torch.float32 else fuse_for_inference(model).to(dtype)
        prepared[mode] = (module, example.to(dtype).contiguous(memory_format=torch.channels_last))
    return prepared


def _synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_round_robin(prepared, iterations, warmup, device):
    """Milliseconds per forward, per mode; one forward of each mode per round."""
    samples = {mode: [] for mode in prepared}
    with torch.inference_mode():
        for round_index in range(warmup + iterations):
            for mode, (module, inputs) in prepared.items():
                _synchronize(device)
                start = time.perf_counter()
                module(inputs)
                _synchronize(device)
                if round_index >= warmup:
                    samples[mode].append((time.perf_counter() - start) * 1e3)
    return samples


def benchmark(arch, size, args, device):
    torch.manual_seed(0)
    model = create_model(arch, args.num_classes).eval().to(device)
    example = torch.randn(args.batch, 3, *size, device=device)
    record = {"arch": arch, "size": list(size), "batch": args.batch,
              "params": count_parameters(model), "output_stride": model.output_stride,
              "gflops": round(count_gflops(arch, args.num_classes, size), 2)}
    samples = time_round_robin(prepare_modes(model, args.modes, example), args.iterations,
                               args.warmup, device)
    baseline = statistics.median(samples[BASELINE]) / args.batch
    record["modes"] = {}
    for mode, times in samples.items():
        per_frame = [t / args.batch for t in times]
        median = statistics.median(per_frame)
        record["modes"][mode] = {"ms_per_frame": round(median, 2), "min_ms": round(min(per_frame), 2),
                                 "speedup_vs_unfused_fp32": round(baseline / median, 2)}
    return record


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    environment = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                   "device": str(device), "cpu": cpu_description(), "iterations": args.iterations,
                   "warmup": args.warmup, "num_classes": args.num_classes}
    if device.type == "cuda":
        environment["gpu"] = torch.cuda.get_device_name(device)
    print(json.dumps({"environment": environment}), flush=True)
    results = []
    for arch in args.archs:
        for size in args.sizes:
            record = benchmark(arch, size, args, device)
            results.append(record)
            print(json.dumps(record), flush=True)
    document = json.dumps({"environment": environment, "results": results}, indent=2)
    print(document)
    if args.output:
        args.output.write_text(document + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
