"""refinenet-export: a trained model -> ONNX (opset >= 17) and TorchScript, checked with
onnxruntime; ``--int8`` quantises for ONNX Runtime on CPUs. The export itself is library code
in :mod:`refinenet_ros.engine.backends.export` and :mod:`refinenet_ros.training.quantize`.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

from ..engine.backends.export import (
    DEFAULT_SIZE,
    MIN_LABEL_AGREEMENT,
    MIN_OPSET,
    ExportWrapper,
    describe_graph,
    example_input,
    export_onnx,
    export_torchscript,
    load_fused_model,
)
from ..training.quantize import export_int8, quantize_described
from ..models import available_archs


def parity_report(path, reference, shapes):
    """Compare onnxruntime on ``path`` with the fp32 ``reference`` wrapper on random inputs of
    each (batch, height, width) in ``shapes``: max abs logit difference and label agreement."""
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rows = []
    for seed, (batch, height, width) in enumerate(shapes):
        x = example_input(reference.input_mode, batch, height, width, seed=seed + 1)
        with torch.no_grad():
            expected = reference(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        row = {"batch": batch, "height": height, "width": width, "output_shape": list(got.shape)}
        if got.shape != expected.shape:
            row["error"] = f"shape {got.shape} != PyTorch {expected.shape}"
        elif reference.output_mode == "logits":
            row["max_abs_diff"] = float(np.abs(got - expected).max())
            row["max_abs_logit"] = float(np.abs(expected).max())
            row["label_agreement"] = float((got.argmax(1) == expected.argmax(1)).mean())
        else:
            row["label_agreement"] = float((got == expected).mean())
        rows.append(row)
    return rows


def benchmark(path, wrapper, batch, height, width, iterations, extra_precisions=()):
    """Median ms/batch of onnxruntime (CPU) vs the same wrapper in PyTorch fp32 (fused,
    channels_last), on the same frames, in this run; ratios are PyTorch fp32 / other."""
    import onnxruntime as ort
    threads = torch.get_num_threads()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = example_input(wrapper.input_mode, batch, height, width, seed=7)
    feed = {"input": x.numpy()}
    torch_x = x if wrapper.input_mode == "uint8_nhwc" else x.contiguous(memory_format=torch.channels_last)
    runners = {"onnxruntime_cpu": lambda: session.run(None, feed), "torch_fp32": lambda: wrapper(torch_x)}
    for precision in extra_precisions:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        cast = ExportWrapper(wrapper.model, wrapper.input_mode, wrapper.output_mode, dtype)
        runners[f"torch_{precision}"] = (lambda m: lambda: m(torch_x))(cast)
    times = {name: [] for name in runners}
    with torch.inference_mode():
        for name, run in runners.items():
            run()  # warm-up
        for _ in range(iterations):  # interleaved so load changes hit every runner alike
            for name, run in runners.items():
                start = time.perf_counter()
                run()
                times[name].append((time.perf_counter() - start) * 1000)
    median = {name: float(np.median(t)) for name, t in times.items()}
    return {"batch": batch, "height": height, "width": width, "iterations": iterations,
            "threads": threads, "median_ms": median,
            "speedup_vs_torch_fp32": {n: median["torch_fp32"] / m for n, m in median.items()}}


def format_report(report):
    """The export report as short readable lines."""
    lines = [f"wrote {report['onnx']}: {report['arch']}, {report['num_classes']} classes, "
             f"{report['precision']}, {report['input_mode']} -> {report['output_mode']}"]
    for kind in ("inputs", "outputs"):
        for v in report["graph"][kind]:
            shape = ", ".join(map(str, v["shape"]))
            lines.append(f"  {kind[:-1]:<6} {v['name']:<7} {v['dtype']:<8} [{shape}]")
    if "torchscript" in report:
        lines.append(f"wrote {report['torchscript']} (TorchScript, same interface)")
    if "label_agreement" in report:
        lines.append(f"  int8: calibrated on {report['calibration_frames']} frames; labels identical to "
                     f"fp32 on {100 * report['label_agreement']:.3f}% of pixels of "
                     f"{report['agreement_frames']} other frames")
    for row in report.get("parity_vs_pytorch_fp32", []):
        head = f"  parity {row['batch']}x{row['height']}x{row['width']}: "
        if "error" in row:
            lines.append(head + "FAILED: " + row["error"])
            continue
        diff = (f"max |diff| {row['max_abs_diff']:.2e} (max |logit| {row['max_abs_logit']:.2e}), "
                if "max_abs_diff" in row else "")
        lines.append(head + diff + f"labels identical {100 * row['label_agreement']:.3f}%")
    return "\n".join(lines)


def build_parser():
    p = argparse.ArgumentParser(prog="refinenet-export", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", help=f"model architecture ({', '.join(available_archs())}); "
                                  "taken from the metadata with --weights default")
    p.add_argument("--weights", required=True, help='checkpoint path, "default" for the shipped model, or a '
                                                     'described .onnx from elsewhere to quantise (--int8)')
    p.add_argument("--output", required=True, help="ONNX file to write")
    p.add_argument("--height", type=int, help="input height (default: the model's input_size, else 480)")
    p.add_argument("--width", type=int, help="input width (default: the model's input_size, else 640)")
    p.add_argument("--batch", type=int, help="fix the batch size (default: dynamic batch)")
    p.add_argument("--dynamic", action="store_true", help="dynamic height and width as well")
    p.add_argument("--fp16", action="store_true", help="fp16 weights and arithmetic (I/O stays float32)")
    p.add_argument("--uint8-input", nargs="?", const="nhwc", choices=("nhwc", "nchw"),
                   help="take uint8 RGB (NHWC unless 'nchw' is given) and normalise inside the graph")
    p.add_argument("--labels", action="store_true",
                   help="output argmax labels at input resolution instead of logits")
    p.add_argument("--int8", metavar="FRAMES",
                   help="quantise to int8 (ONNX Runtime, CPU) calibrated on FRAMES: a folder of images "
                        "or a list file (e.g. CamVid's train.txt); agreement is checked on other frames")
    p.add_argument("--calibration-frames", type=int, default=32, metavar="N",
                   help="frames used for int8 calibration and for the agreement check (default 32)")
    p.add_argument("--min-agreement", type=float, default=MIN_LABEL_AGREEMENT,
                   help=f"least fraction of pixels an int8 model must label as fp32 does "
                        f"(default {MIN_LABEL_AGREEMENT})")
    p.add_argument("--torchscript", metavar="FILE.pt", help="also save a traced TorchScript module")
    p.add_argument("--opset", type=int, default=MIN_OPSET, help=f"ONNX opset (>= {MIN_OPSET})")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity report")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--benchmark", type=int, metavar="N", default=0,
                   help="time onnxruntime CPU vs PyTorch CPU over N iterations (JSON on stdout)")
    p.add_argument("--benchmark-bf16", action="store_true", help="add PyTorch bf16 to the benchmark")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.weights.lower().endswith(".onnx"):
        return _quantise_onnx(args)
    try:
        model, info = load_fused_model(args.arch, args.weights)
        height, width = info.get("input_size", DEFAULT_SIZE)
        height, width = args.height or height, args.width or width
        if args.batch is not None and args.batch < 1:
            raise ValueError(f"--batch must be >= 1 (got {args.batch})")
        input_mode = f"uint8_{args.uint8_input}" if args.uint8_input else "float_nchw"
        output_mode = "labels" if args.labels else "logits"
        reference = ExportWrapper(model, input_mode, output_mode)
        wrapper = ExportWrapper(model, input_mode, output_mode,
                                torch.float16 if args.fp16 else torch.float32)
        shape = dict(batch=args.batch, height=height, width=width)
        if args.int8:
            report = export_int8(wrapper, info, args.output, args.int8, args.calibration_frames,
                                 dynamic=args.dynamic, opset=args.opset, **shape)
        else:
            export_onnx(wrapper, args.output, info, dynamic=args.dynamic, opset=args.opset, **shape)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"refinenet-export: error: {exc}", file=sys.stderr)
        return 2
    if args.int8:
        return _int8_verdict(args, report)
    report = {"onnx": str(args.output), **info, "input_mode": input_mode, "output_mode": output_mode,
              "precision": "fp16" if args.fp16 else "fp32", "graph": describe_graph(args.output)}
    if args.torchscript:
        export_torchscript(wrapper, args.torchscript, info, **shape)
        report["torchscript"] = str(args.torchscript)
    if not args.no_check:
        batch = args.batch or 2
        shapes = [(batch, height, width)]
        if args.batch is None or args.dynamic:  # exercise the dynamic dimensions too
            shapes.append((args.batch or 1, height + 32 if args.dynamic else height,
                           width - 32 if args.dynamic else width))
        report["parity_vs_pytorch_fp32"] = parity_report(args.output, reference, shapes)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    failed = [row for row in report.get("parity_vs_pytorch_fp32", [])
              if "error" in row or row["label_agreement"] < MIN_LABEL_AGREEMENT]
    if failed:
        print(f"refinenet-export: error: onnxruntime disagrees with PyTorch on {len(failed)} parity "
              f"check(s) (labels identical < {100 * MIN_LABEL_AGREEMENT:.0f}% or wrong shape)",
              file=sys.stderr)
        return 1
    if args.benchmark:
        extra = ("bf16",) if args.benchmark_bf16 else ()
        print(json.dumps(benchmark(args.output, reference, args.batch or 1, height, width,
                                   args.benchmark, extra), indent=2))
    return 0


def _quantise_onnx(args):
    """An ONNX model from elsewhere (described: docs/models.md) quantised to int8."""
    if not args.int8:
        print("refinenet-export: error: an .onnx --weights is already exported; it takes --int8 FRAMES "
              "(quantisation) only", file=sys.stderr)
        return 2
    try:
        report = quantize_described(args.weights, args.output, args.int8, args.calibration_frames)
        report["graph"] = describe_graph(args.output)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"refinenet-export: error: {exc}", file=sys.stderr)
        return 2
    return _int8_verdict(args, report)


def _int8_verdict(args, report):
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    if report["label_agreement"] < args.min_agreement:
        os.remove(args.output)
        print(f"refinenet-export: error: the int8 model labels {100 * report['label_agreement']:.2f}% "
              f"of pixels as fp32 does, below --min-agreement {100 * args.min_agreement:.2f}%; "
              f"{args.output} removed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
