"""``refinenet-benchmark --all-backends``: every installed backend and precision that can run the
weights on this CPU, plus what ``auto`` chooses, measured in one run, round robin (so load from
other processes hits all alike):

- ``model``: the network alone on a normalised tensor at the network size (logits out);
- ``engine``: ``Segmenter.segment`` end to end, uint8 frame in, labels, colour and overlay out
  (the node's defaults);
- ``agreement``: share of labels equal to the fp32 PyTorch engine's, on real frames.

Ratios are against ``onnxruntime/int8`` (engine) and the bare OpenVINO int8 model, where present.
"""
import time

import numpy as np
import torch

from ..engine import Segmenter
from ..engine.hardware.cpu import cpu_info
from ..engine.planning.plan import weight_files
from ..engine.backends import BACKENDS
from ..models import normalize_images

OVERLAY_ALPHA = 0.5


def configurations(weights, arch, cpu):
    """(backend, precision) pairs this CPU can run for ``weights``, installed backends only."""
    files = weight_files(weights, arch)
    pairs = []
    for name, spec in BACKENDS.items():
        for precision in spec.runs.get("cpu", ()):
            if precision == "bf16" and not cpu.native_bf16:
                continue  # emulated: minutes per frame, nothing to learn
            kind = ".onnx" if precision == "int8" else files.float_kind
            file = files.int8_file if precision == "int8" else files.float_file
            if (file is not None or kind is None) and spec.refusal("cpu", precision, kind) is None:
                pairs.append((name, precision))
    return pairs


def _network_input(engine, frame, size):
    x = torch.from_numpy(frame).permute(2, 0, 1)[None]
    x = normalize_images(x)
    if tuple(x.shape[-2:]) != tuple(size):
        x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x.contiguous(memory_format=torch.channels_last)


def run_all(args, frames, checked):
    cpu = cpu_info()
    common = {"arch": args.arch, "weights": args.engine_weights, "num_classes": args.num_classes,
              "device": "cpu", "input_size": args.input_size}
    engines = {f"{b}/{p}": Segmenter(**common, backend=b, precision=p)
               for b, p in configurations(args.engine_weights, args.arch, cpu)}
    auto = Segmenter(**common)
    engines[f"auto ({auto.backend}/{auto.precision})"] = auto
    reference = Segmenter(**common, backend="torch", precision="fp32")
    size = args.input_size or frames[0].shape[:2]
    x = _network_input(reference, frames[0], size)
    times = {name: {"model": [], "engine": []} for name in engines}
    with torch.inference_mode():
        for round_ in range(args.warmup + args.iterations):
            for name, engine in engines.items():
                model_s = _seconds(lambda: engine.network(x))
                engine_s = _seconds(lambda: engine.segment(frames, overlay_alpha=OVERLAY_ALPHA))
                if round_ >= args.warmup:
                    times[name]["model"].append(model_s)
                    times[name]["engine"].append(engine_s / len(frames))
    want = [r.labels for f in checked for r in reference.segment([f])]
    rows = {}
    for name, engine in engines.items():
        got = [r.labels for f in checked for r in engine.segment([f])]
        rows[name] = {"model_ms": _ms(times[name]["model"]), "engine_ms": _ms(times[name]["engine"]),
                      "engine_frames_per_s": round(1.0 / float(np.median(times[name]["engine"])), 2),
                      "agreement_with_fp32_percent": round(100.0 * float(np.mean(
                          [np.mean(a == b) for a, b in zip(got, want)])), 3)}
    _add_ratios(rows, auto)
    return {"cpu": cpu.describe(), "auto_reason": auto.plan.reason, "results": rows}


def _add_ratios(rows, auto):
    auto_row = next(row for name, row in rows.items() if name.startswith("auto"))
    if "onnxruntime/int8" in rows:
        auto_row["engine_vs_onnxruntime_int8"] = round(
            rows["onnxruntime/int8"]["engine_ms"] / auto_row["engine_ms"], 2)
    if "openvino/int8" in rows:
        auto_row["engine_fps_vs_bare_openvino_int8_model_fps"] = round(
            rows["openvino/int8"]["model_ms"] / auto_row["engine_ms"], 2)


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _ms(values):
    return round(1000.0 * float(np.median(values)), 2)
