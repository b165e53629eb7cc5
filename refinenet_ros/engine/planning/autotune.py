"""``backend: auto`` by measurement: each candidate (backend, precision, weights file) is timed
briefly in a child process (:mod:`..measure`), the fastest is kept, and the decision is cached.
A backend that overlaps calls (OpenVINO's streams) is also timed with two frames in flight, so
``streams: auto`` keeps two only where they pay (:mod:`.streams`).

Child processes, one at a time: a native runtime that fails to load or dies by a signal on an
unusual CPU costs that candidate, never the caller. The cache (a JSON file per key in
``$REFINENET_ROS_CACHE`` or ``$XDG_CACHE_HOME/refinenet_ros``, safe to delete) is keyed by the
CPU, the runtimes' versions, the weights file (path, size, modification time), the network size
and the candidates, so any change measures again; a lock file serialises two nodes that start
at once (the second reads the first one's result). ``REFINENET_ROS_AUTOTUNE=0`` turns
measuring off (the plan's static order decides).
"""
import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile

import numpy as np

from ..backends import BACKENDS
from .streams import TWO_AT_ONCE

MIN_BF16_AGREEMENT = 0.99  # bf16 is kept only with this share of labels as fp32
CHILD_TIMEOUT_S = 180.0    # loading includes an ONNX export and a compile on a slow CPU
RUNTIMES = ("torch", "onnxruntime", "openvino")
MEASURES = 2               # what a record holds; a new value measures again


def enabled():
    return os.environ.get("REFINENET_ROS_AUTOTUNE", "1") != "0"


def cache_dir():
    override = os.environ.get("REFINENET_ROS_CACHE")
    base = override or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                    "refinenet_ros")
    return pathlib.Path(base) / "backend_choice"


def choose(candidates, arch, size, cpu, folder=None, model_info=None):
    """((backend, precision, file), how, {label: ms}) of the fastest candidate, or None when
    measuring is off or every candidate failed."""
    if not enabled():
        return None
    folder = pathlib.Path(folder) if folder else cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    key_fields = _key_fields(candidates, arch, size, cpu, model_info)
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:24]
    path = folder / f"{key}.json"
    with _locked(folder / f"{key}.lock"):
        record = _read(path, key_fields)
        fresh = record is None
        if fresh:
            record = {"key": key_fields, "results": measure_all(candidates, arch, size, model_info)}
            record["choice"] = _fastest(record["results"])
            if record["choice"] is not None:
                _write(path, record)
    if record["choice"] is None:
        return None
    chosen = next(c for c in candidates if _label(c) == record["choice"])
    figures = {}
    for label, result in record["results"].items():
        figures.update({label + suffix: result[name] for name, suffix in
                        (("ms", ""), ("ms_two_at_once", TWO_AT_ONCE)) if name in result})
    return chosen, _explain(record, size, path, fresh), figures


def measure_all(candidates, arch, size, model_info=None):
    """label -> {"ms", "agreement"} (and "ms_two_at_once" for a backend that overlaps calls, on
    two cores or more) or {"skipped": reason}, every candidate in its own child."""
    results, cores = {}, len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="refinenet_autotune_") as scratch:
        labels = {}
        for backend, precision, file in candidates:
            label = _label((backend, precision, file))
            out = os.path.join(scratch, f"{backend}_{precision}.npy")
            two = BACKENDS[backend].overlaps and cores >= 2
            results[label] = _measure_in_child(backend, precision, file, arch, size, out, two, model_info)
            if "ms" in results[label]:
                labels[label] = np.load(out)
        reference = next((labels[k] for k in labels if k.endswith("/fp32")), None)
        for label, result in results.items():
            if label in labels and reference is not None:
                result["agreement"] = round(float(np.mean(labels[label] == reference)), 5)
    return results


def _measure_in_child(backend, precision, file, arch, size, out, two_at_once=False, model_info=None):
    spec = {"backend": backend, "precision": precision, "weights": file, "arch": arch,
            "size": list(size), "labels_out": out, "two_at_once": two_at_once, "model_info": model_info}
    try:
        done = subprocess.run([sys.executable, "-m", "refinenet_ros.engine.measure", json.dumps(spec)],
                              capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"skipped": f"no result within {CHILD_TIMEOUT_S:.0f} s"}
    if done.returncode < 0:
        return {"skipped": f"killed by {signal.Signals(-done.returncode).name}"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"skipped": f"failed (exit {done.returncode}): {tail[:300]}"}
    return json.loads(lines[-1])


def _fastest(results):
    usable = {label: r for label, r in results.items() if "ms" in r
              and (not label.endswith("/bf16") or r.get("agreement", 0.0) >= MIN_BF16_AGREEMENT)}
    return min(usable, key=lambda label: usable[label]["ms"]) if usable else None


def _explain(record, size, path, fresh):
    figures = ", ".join(_figures(label, r) for label, r in record["results"].items())
    source = "measured now" if fresh else "measured earlier"
    return (f"{record['choice']} is the fastest {source} (engine, one {size[0]}x{size[1]} frame: "
            f"{figures}); decision cached in {path}")


def _figures(label, result):
    if "ms" not in result:
        return f"{label} skipped: {result['skipped']}"
    text = f"{label} {result['ms']:.1f} ms"
    if "ms_two_at_once" in result:
        text += f" ({result['ms_two_at_once']:.1f} ms a frame with two at once)"
    if "agreement" in result and "fp32" not in label:
        text += f" ({100 * result['agreement']:.2f}% as fp32)"
    return text


def _label(candidate):
    return f"{candidate[0]}/{candidate[1]}"


def _key_fields(candidates, arch, size, cpu, model_info=None):
    files = sorted({file for _, _, file in candidates if file} | ({model_info} if model_info else set()))
    return {"cpu": cpu.model, "flags": sorted(cpu.flags), "runtimes": runtime_versions(), "arch": arch,
            "size": list(size), "candidates": sorted(_label(c) for c in candidates),
            "files": [file_identity(f) for f in files], "python": sys.version.split()[0],
            "measures": MEASURES, "cores": len(os.sched_getaffinity(0))}


def runtime_versions():
    versions = {}
    for name in RUNTIMES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def file_identity(path):
    """What makes a weights file the same one: its absolute path, size and modification time."""
    stat = os.stat(path)
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


@contextlib.contextmanager
def _locked(path):
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read(path, key_fields):
    """The cached record for exactly these key fields, or None (absent, corrupt or stale)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != key_fields or record.get("choice") \
            not in record.get("results", {}):
        return None
    return record


def _write(path, record):
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp_", suffix=".json")
    with os.fdopen(handle, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)
