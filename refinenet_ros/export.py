"""refinenet-export: a trained model -> ONNX (opset >= 17) and TorchScript, checked with onnxruntime.

The exported graph is the fused inference model (BatchNorm folded, 1x1 pairs merged), by
default with the same interface as :func:`refinenet_ros.models.create_model`: normalised float
NCHW RGB in, logits at ``output_stride`` out. Options bake in uint8 input (normalisation inside
the graph), fp16 weights and an argmax label output at input resolution. The batch is dynamic
unless ``--batch`` fixes it; ``--dynamic`` makes height and width dynamic too.

Export uses the TorchScript-based exporter (``dynamo=False``): the torch.export-based one
needs onnxscript, which this package does not depend on, and the traced graph is already
what TensorRT wants (plain Conv/Clip/MaxPool/Add and Resize with
``coordinate_transformation_mode=align_corners``).
"""
import argparse
import contextlib
import copy
import json
import os
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .models import (IMAGENET_MEAN, IMAGENET_STD, CheckpointError, available_archs, create_model,
                     fuse_for_inference, load_checkpoint, num_classes_in, read_state_dict)

INPUT_MODES = ("float_nchw", "uint8_nhwc", "uint8_nchw")
OUTPUT_MODES = ("logits", "labels")
MIN_OPSET = 17
MIN_LABEL_AGREEMENT = 0.99  # below this the parity check fails (fp32 exports reach 100%)
DEFAULT_SIZE = (480, 640)
PRECISIONS = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


class ExportWrapper(nn.Module):
    """The fused model with the chosen graph interface around it.

    ``input_mode`` "uint8_nhwc"/"uint8_nchw" take 0-255 RGB and normalise inside the graph;
    ``output_mode`` "labels" upsamples the logits to the input size (bilinear, as in training
    and evaluation) and returns the argmax as uint8 (uint16 above 255 classes). A ``dtype``
    other than float32 runs a cast copy of the model; inputs and logits stay float32.
    """

    def __init__(self, model, input_mode="float_nchw", output_mode="logits", dtype=torch.float32):
        super().__init__()
        if input_mode not in INPUT_MODES:
            raise ValueError(f"input_mode must be one of {INPUT_MODES}, got {input_mode!r}")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {output_mode!r}")
        self.model = model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)
        self.input_mode, self.output_mode, self.dtype = input_mode, output_mode, dtype
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255)
        self.label_dtype = torch.uint8 if model.num_classes <= 255 else torch.uint16

    def forward(self, x):
        if self.input_mode == "uint8_nhwc":
            x = x.permute(0, 3, 1, 2)
        if self.input_mode != "float_nchw":
            x = (x.float() - self.mean) / self.std
        if self.dtype != torch.float32:
            x = x.to(self.dtype)
        logits = self.model(x).float()
        if self.output_mode == "logits":
            return logits
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits.argmax(1).to(self.label_dtype)


def load_fused_model(arch, weights):
    """(fused fp32 model, metadata dict) for ``weights``: a path or "default" (the shipped model)."""
    meta = {}
    if weights == "default":
        from .paths import model_metadata
        meta = model_metadata()
        if arch not in (None, meta["arch"]):
            raise ValueError(f"--arch {arch} does not match the default model's arch {meta['arch']}")
        arch, weights = meta["arch"], meta["weights"]
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"the default model's weights {weights} are missing (not trained or "
                                    "not installed yet); pass --weights PATH to a checkpoint")
    if arch is None:
        raise ValueError("--arch is required unless --weights default")
    state_dict = read_state_dict(weights)  # CheckpointError names the file when missing/corrupt
    try:
        model = load_checkpoint(create_model(arch, num_classes_in(state_dict)), state_dict).eval()
    except CheckpointError as exc:
        raise CheckpointError(f"{weights} (--arch {arch}): {exc}") from exc
    info = {"arch": arch, "num_classes": model.num_classes, "output_stride": model.output_stride}
    for key in ("classes", "palette", "input_size"):
        if key in meta:
            info[key] = meta[key]
    return fuse_for_inference(model), info


def example_input(input_mode, batch, height, width, seed=0):
    """A reproducible random image batch in the graph's input format."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 3, height, width), generator=gen, dtype=torch.uint8)
    if input_mode == "uint8_nchw":
        return images
    if input_mode == "uint8_nhwc":
        return images.permute(0, 2, 3, 1).contiguous()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    return (images.float() - mean) / std


@contextlib.contextmanager
def _quiet_tracing():
    """Silence the exporter's deprecation notices and the tracer's note on ``upsample_to``'s
    shape test: the trace keeps its resize branch, and resizing to the same size is the
    identity, so the traced graph is exact at every input size."""
    with warnings.catch_warnings():
        for category in (torch.jit.TracerWarning, DeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category)
        yield


def export_onnx(wrapper, path, info, *, batch=None, height=DEFAULT_SIZE[0], width=DEFAULT_SIZE[1],
                dynamic=False, opset=MIN_OPSET):
    """Write ``wrapper`` to ``path`` as ONNX. ``batch=None`` makes the batch dimension dynamic;
    ``dynamic`` also height and width. ``info`` goes into the model's metadata_props."""
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET} (got {opset})")
    if min(height, width) < 64:
        raise ValueError(f"export size must be at least 64x64 (got {height}x{width})")
    import onnx
    wrapper = wrapper.eval()
    example = example_input(wrapper.input_mode, batch or 2, height, width)
    output_name = wrapper.output_mode
    spatial = (1, 2) if wrapper.input_mode == "uint8_nhwc" else (2, 3)
    input_axes = {0: "batch"} if batch is None else {}
    if dynamic:
        input_axes.update({spatial[0]: "height", spatial[1]: "width"})
    output_shape = _output_shape(wrapper, batch, height, width, dynamic)
    output_axes = {i: d for i, d in enumerate(output_shape) if isinstance(d, str)}
    with _quiet_tracing(), torch.no_grad():
        torch.onnx.export(wrapper, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=[output_name],
                          dynamic_axes={"input": input_axes, output_name: output_axes},
                          do_constant_folding=True)
    proto = onnx.load(str(path))
    _drop_identities(proto.graph)
    # The tracer names derived dims after internal nodes ("Castlogits_dim_2"); state them.
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    del dims[:]
    for size in output_shape:
        dim = dims.add()
        if isinstance(size, str):
            dim.dim_param = size
        else:
            dim.dim_value = size
    metadata = {**info, "input_mode": wrapper.input_mode, "output_mode": output_name,
                "precision": PRECISIONS[wrapper.dtype], "producer": "refinenet_ros"}
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def _drop_identities(graph):
    """Bypass the exporter's Identity nodes (left where BatchNorm was folded away)."""
    outputs = {o.name for o in graph.output}
    rename = {}
    for node in [n for n in graph.node if n.op_type == "Identity" and n.output[0] not in outputs]:
        rename[node.output[0]] = rename.get(node.input[0], node.input[0])
        graph.node.remove(node)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]


def _output_shape(wrapper, batch, height, width, dynamic):
    """Output dims, str for dynamic ones: labels (N, H, W) or logits (N, K, ceil(H/s), ceil(W/s))."""
    n = "batch" if batch is None else batch
    if wrapper.output_mode == "labels":
        return [n, "height", "width"] if dynamic else [n, height, width]
    stride = wrapper.model.output_stride
    spatial = ["out_height", "out_width"] if dynamic else [-(-height // stride), -(-width // stride)]
    return [n, wrapper.model.num_classes, *spatial]


def export_torchscript(wrapper, path, info, *, batch=None, height=DEFAULT_SIZE[0], width=DEFAULT_SIZE[1]):
    """Trace ``wrapper`` and save it with the metadata as ``metadata.json`` extra file."""
    example = example_input(wrapper.input_mode, batch or 2, height, width)
    with _quiet_tracing(), torch.no_grad():
        traced = torch.jit.trace(wrapper.eval(), (example,), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={"metadata.json": json.dumps(
            {**info, "input_mode": wrapper.input_mode, "output_mode": wrapper.output_mode})})
    return traced


def describe_graph(path):
    """{"inputs": [...], "outputs": [...]} with name, dtype and shape (str for dynamic dims)."""
    import onnx
    graph = onnx.load(str(path), load_external_data=False).graph

    def entry(value):
        tensor = value.type.tensor_type
        dims = [d.dim_param or d.dim_value for d in tensor.shape.dim]
        return {"name": value.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
                "shape": dims}
    return {"inputs": [entry(v) for v in graph.input], "outputs": [entry(v) for v in graph.output]}


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
    p.add_argument("--weights", required=True, help='checkpoint path, or "default" for the shipped model')
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
            from .quantize import export_int8
            report = export_int8(wrapper, info, args.output, args.int8, args.calibration_frames,
                                 dynamic=args.dynamic, opset=args.opset, **shape)
        else:
            export_onnx(wrapper, args.output, info, dynamic=args.dynamic, opset=args.opset, **shape)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"refinenet-export: error: {exc}", file=sys.stderr)
        return 2
    if args.int8:
        print(json.dumps(report, indent=2) if args.json else format_report(report))
        if report["label_agreement"] < args.min_agreement:
            os.remove(args.output)
            print(f"refinenet-export: error: the int8 model labels {100 * report['label_agreement']:.2f}% "
                  f"of pixels as fp32 does, below --min-agreement {100 * args.min_agreement:.2f}%; "
                  f"{args.output} removed", file=sys.stderr)
            return 1
        return 0
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


if __name__ == "__main__":
    sys.exit(main())
