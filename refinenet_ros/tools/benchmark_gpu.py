"""The GPU check's benchmark (``scripts/gpu_check.sh``): the engine beside the whole-pipeline
anchor, measured in the same run, as one JSON object.

    python -m refinenet_ros.tools.benchmark_gpu --frames ../shared/data/camvid/val.txt

The anchor is the whole frame pipeline captured once in a CUDA graph per batch size (pinned
uint8 upload, normalise, the fused fp16 model, bilinear upsampling, arg-max, palette, pinned
download of labels and colours), replayed: what the GPU gives. Beside it, ``Segmenter`` in fp16
and fp32 with its CUDA graphs on and off at each batch size, and the graphs' self-checks; 8
cameras batched against one at a time; fp16's labels against fp32's; peak GPU memory; training
iterations/s (fp16 autocast, one batch of crops); with ``--tests``, the test summary. With
``--device cpu`` the CUDA-only parts say why they were skipped (a dry run of the rest).
"""
import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..engine import Segmenter
from ..engine.frames import read_frames, synthetic_frame
from ..models import IMAGENET_MEAN, IMAGENET_STD, create_model


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default="default")
    p.add_argument("--frames", help="real frames (folder, list file, video); default: synthetic")
    p.add_argument("--size", type=int, nargs=2, default=(360, 480), metavar=("H", "W"))
    p.add_argument("--batches", type=int, nargs="+", default=(1, 8, 16))
    p.add_argument("--seconds", type=float, default=2.0, help="timed per measurement")
    p.add_argument("--device", default="cuda")
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--tests", help="pytest's output to summarise in the report (scripts/gpu_check.sh)")
    return p.parse_args(argv)


def tests_summary(path):
    """{"passed": n, "failed": n, "skipped": n, ..., "failures": [test ids]} of pytest's output."""
    import re
    with open(path) as f:
        text = f.read()
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed)", text)}
    return {**counts, "failures": re.findall(r"^(?:FAILED|ERROR) (\S+)", text, re.M)}


def frames_per_s(run, batch, seconds, sync):
    """Frames/s of ``run()`` (one batch of ``batch`` frames), warmed up, for about ``seconds``."""
    for _ in range(3):
        run()
    sync()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or calls < 3:
        run()
        calls += 1
    sync()
    return round(calls * batch / (time.perf_counter() - start), 1)


def anchor(model, palette, frames, batch, size):
    """A function running the whole pipeline of ``batch`` frames as one CUDA graph replay."""
    device = torch.device("cuda")
    height, width = frames[0].shape[:2]
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255
    colours = torch.from_numpy(palette).to(device)
    staging = torch.empty((batch, height, width, 3), dtype=torch.uint8).pin_memory()
    pixels = torch.empty((batch, height, width, 3), dtype=torch.uint8, device=device)

    def pipeline():
        x = pixels.permute(0, 3, 1, 2).float()
        if (height, width) != tuple(size):
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
        x = ((x - mean) / std).half().contiguous(memory_format=torch.channels_last)
        scores = F.interpolate(model(x).float(), size=(height, width), mode="bilinear", align_corners=False)
        labels = scores.argmax(1)
        return labels.to(torch.uint8), colours[labels]

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.cuda.stream(side):
        for _ in range(3):  # warm-up outside the graph (cuDNN picks its kernels)
            pipeline()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        labels, colour = pipeline()
    labels_out = torch.empty(labels.shape, dtype=torch.uint8).pin_memory()
    colour_out = torch.empty(colour.shape, dtype=torch.uint8).pin_memory()
    batch_pixels = np.stack([frames[i % len(frames)] for i in range(batch)])

    def run():
        staging.numpy()[...] = batch_pixels
        pixels.copy_(staging, non_blocking=True)
        graph.replay()
        labels_out.copy_(labels, non_blocking=True)
        colour_out.copy_(colour, non_blocking=True)
        torch.cuda.current_stream().synchronize()
        return labels_out.numpy(), colour_out.numpy()
    return run


def engine_figures(args, frames, sync):
    """Frames/s of the engine per precision, with CUDA graphs on and off (on a CPU: off only),
    per batch size."""
    figures, engines = {}, {}
    modes = (True, False) if args.device.startswith("cuda") else (False,)
    for precision in ("fp16", "fp32"):
        for graphs in modes:
            name = f"{precision}" + ("" if graphs else " eager")
            try:
                seg = Segmenter(weights=args.weights, device=args.device, precision=precision, backend="torch",
                                input_size=tuple(args.size), cuda_graphs=graphs)
            except ValueError as exc:  # fp16 on a CPU
                figures[name] = {"skipped": str(exc)}
                continue
            engines[name] = seg
            figures[name] = {str(b): frames_per_s(lambda b=b: seg.segment(frames[:b]), b, args.seconds, sync)
                             for b in args.batches}
    return figures, engines


def training_its(args, sync):
    device = torch.device(args.device)
    model = create_model("mbv2", 11).to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    x = torch.randn(args.train_batch, 3, *args.size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 11, (args.train_batch, *args.size), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            logits = model(x)
        loss = F.cross_entropy(F.interpolate(logits.float(), size=tuple(args.size), mode="bilinear",
                                             align_corners=False), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    its = frames_per_s(step, 1, args.seconds, sync)
    return {"batch": args.train_batch, "crop": list(args.size), "amp": "fp16" if amp else "off",
            "iterations_per_s": its}


def main(argv=None):
    args = parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("benchmark_gpu: no CUDA device (pass --device cpu for a dry run)")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    count = max(max(args.batches), 8)
    frames = read_frames(args.frames, count) if args.frames else \
        [synthetic_frame(*args.size, seed=i) for i in range(count)]
    report = {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
              "size": list(args.size), "frames": args.frames or "synthetic"}
    report["engine_fps"], engines = engine_figures(args, frames, sync)
    fp16, fp32 = engines.get("fp16"), engines.get("fp32") or engines.get("fp32 eager")
    if fp16 is not None:
        report["anchor_fps"] = {str(b): frames_per_s(anchor(fp16.network.model, fp16.palette, frames, b, args.size),
                                                     b, args.seconds, sync) for b in args.batches}
        report["engine_vs_anchor"] = {name: {b: round(report["engine_fps"][name][b] / fps, 3)
                                             for b, fps in report["anchor_fps"].items()}
                                      for name in ("fp16", "fp16 eager") if name in engines}
        report["fp16_vs_fp32"] = {mode: {b: round(fps / report["engine_fps"][f"fp32{mode}"][b], 3)
                                         for b, fps in report["engine_fps"][f"fp16{mode}"].items()}
                                  for mode in ("", " eager")}
        ours, theirs = fp16.segment(frames[:8]), fp32.segment(frames[:8])
        report["fp16_labels_as_fp32"] = round(float(np.mean([(a.labels == b.labels).mean()
                                                              for a, b in zip(ours, theirs)])), 5)
    else:
        report["anchor_fps"] = {"skipped": "the anchor is a CUDA graph: it needs CUDA and fp16"}
    seg = fp16 or fp32
    batched = frames_per_s(lambda: seg.segment(frames[:8]), 8, args.seconds, sync)
    singly = frames_per_s(lambda: [seg.segment([f]) for f in frames[:8]], 8, args.seconds, sync)
    report["cameras_8"] = {"batched_fps": batched, "one_at_a_time_fps": singly, "ratio": round(batched / singly, 3)}
    if cuda:
        report["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        # every graph captured by now, each checked against the eager path on its first replay
        report["self_checks"] = {name: seg.graph_status for name, seg in engines.items() if "eager" not in name}
    else:
        report["self_checks"] = {"skipped": "CUDA graphs need CUDA"}
    report["training"] = training_its(args, sync)
    report["targets"] = {"engine_vs_anchor fp16": ">= 0.8 at batch 1 and 8", "fp16_vs_fp32": ">= 1.0 at every batch",
                         "cameras_8 ratio": ">= 3 (CUDA)", "self_checks": "no refusal"}
    if args.tests:
        report["tests"] = tests_summary(args.tests)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
