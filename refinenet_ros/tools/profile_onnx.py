"""Where an exported model spends its time: ONNX Runtime's own profiler, summed per model
block (``encoder/stages.3``, ``decoder/levels.2``, ``classifier``...) and per operator type.

    python -m refinenet_ros.tools.profile_onnx models/camvid_mbv2_int8.onnx
    python -m refinenet_ros.tools.profile_onnx my.onnx --height 720 --width 960 --runs 5 --json

Timings are the kernels' own (ONNX Runtime's ``*_kernel_time`` events), averaged over
``--runs`` runs after ``--warmup``; the session is the engine's own (:class:`OnnxModel` on the
CPU, ``--threads`` intra-op threads, no spinning). Shares are of the summed kernel time.
"""
import argparse
import collections
import json
import os
import sys
import tempfile

import numpy as np

from ..engine.backends.onnxruntime_backend import ONNX_DTYPES, OnnxModel


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="refinenet-profile-onnx", description=__doc__.split("\n\n")[0])
    parser.add_argument("onnx", help="an .onnx file written by refinenet-export")
    parser.add_argument("--height", type=int, default=360, help="input height for a dynamic graph")
    parser.add_argument("--width", type=int, default=480, help="input width for a dynamic graph")
    parser.add_argument("--runs", type=int, default=5, help="profiled runs (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="runs before profiling (default 2)")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = ONNX Runtime's choice)")
    parser.add_argument("--top", type=int, default=12, help="rows per table (default 12)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or min(args.height, args.width) < 32:
        parser.error("--runs must be >= 1, --warmup >= 0, --height and --width >= 32")
    return args


def block_of(node_name):
    """The model block of an exported node: '/model/decoder/levels.3/crp/convs.0/Conv' ->
    'decoder/levels.3'; nodes outside a block (layout transposes...) -> 'other'."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) >= 3 and parts[0] == "model":
        return "/".join(parts[1:3]) if parts[1] in ("encoder", "decoder") else parts[1]
    return "other"


def kernel_times(events):
    """(operator type, node name, microseconds) of each kernel in ONNX Runtime profile events."""
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            yield event["args"]["op_name"], event["name"][:-len("_kernel_time")], event["dur"]


def profile(path, height, width, runs, warmup, threads=0):
    """{"by_block": {block: ms}, "by_op": {op: ms}, "total_ms": ms} per run of ``path``."""
    with tempfile.TemporaryDirectory(prefix="refinenet_ros_profile_") as folder:
        model = OnnxModel(path, "cpu", threads=threads or None, profile_prefix=os.path.join(folder, "profile"))
        graph_input = model.session.get_inputs()[0]
        shape = [d if isinstance(d, int) else 1 for d in graph_input.shape]
        spatial = (1, 2) if model.input_mode == "uint8_nhwc" else (2, 3)
        for axis, size in zip(spatial, (height, width)):
            shape[axis] = graph_input.shape[axis] if isinstance(graph_input.shape[axis], int) else size
        dtype = ONNX_DTYPES.get(graph_input.type, np.float32)
        x = (np.random.default_rng(0).random(shape) * (255 if dtype == np.uint8 else 1)).astype(dtype)
        for _ in range(warmup + runs):
            model.session.run(None, {graph_input.name: x})
        with open(model.session.end_profiling()) as file:
            events = json.load(file)
    # only the kernels of the last ``runs`` runs: the first runs of a session allocate
    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[-runs:]
    events = [e for e in events if any(start <= e.get("ts", -1) <= end for start, end in windows)]
    by_block, by_op = collections.Counter(), collections.Counter()
    for op, node, microseconds in kernel_times(events):
        by_block[block_of(node)] += microseconds / 1000 / runs
        by_op[op] += microseconds / 1000 / runs
    return {"onnx": str(path), "input_shape": shape, "runs": runs,
            "total_ms": round(sum(by_op.values()), 2),
            "by_block": {k: round(v, 2) for k, v in by_block.most_common()},
            "by_op": {k: round(v, 2) for k, v in by_op.most_common()}}


def print_tables(report, top):
    total = report["total_ms"]
    print(f"{report['onnx']}: input {report['input_shape']}, kernels {total:.1f} ms per run "
          f"(mean of {report['runs']})")
    for title in ("by_block", "by_op"):
        print(f"\n{title.replace('_', ' ')}:")
        for name, ms in list(report[title].items())[:top]:
            print(f"  {name:28s} {ms:8.2f} ms {100 * ms / total:5.1f}%")


def main(argv=None):
    args = parse_args(argv)
    try:
        report = profile(args.onnx, args.height, args.width, args.runs, args.warmup, args.threads)
    except (OSError, ValueError) as exc:  # OnnxModelError is a ValueError
        sys.exit(f"refinenet-profile-onnx: {exc}")
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_tables(report, args.top)


if __name__ == "__main__":
    main()
