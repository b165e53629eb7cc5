"""One plan for a request: the user's ``arch``, ``weights``, ``device``, ``precision`` and
``backend`` become (device, precision, backend, weights file, reason), decided here only.

The rules, stated once:

- ``precision: auto`` is int8 where an int8 model exists for the weights (the shipped one's
  export, or an int8 ``.onnx`` given as weights); else the precision of a float ``.onnx``; else
  fp16 on CUDA and an Intel GPU or NPU; else fp32 on a CPU, or bf16 where the CPU has native
  bf16 and a measurement finds bf16 faster with >= 99% of labels as fp32.
- ``backend: auto`` is the one installed backend that can run the request, and where several
  can, on a CPU, the fastest by measurement (:mod:`.autotune`: timed in child processes,
  cached per CPU, runtime versions, weights file, network size and precision). Without a
  measurement (``REFINENET_ROS_AUTOTUNE=0``) :data:`.registry.STATIC_PREFERENCE` decides. On
  CUDA PyTorch runs ``.pth`` weights (fused fp16, batches); an Intel GPU or NPU is OpenVINO's.
- An explicit ``backend`` or ``precision`` is honoured exactly, or refused with the reason.
"""
import os
from dataclasses import dataclass, field

from ..choices import BACKENDS as BACKEND_CHOICES
from .cpu import cpu_info
from .paths import model_metadata
from .devices import device_name_problem, device_type
from .precision import INT8, check_precision_name, check_precision_supported, resolve_device
from .registry import BACKENDS, RANDOM_INIT, STATIC_PREFERENCE, TWO_AT_ONCE

DEFAULT_MEASURE_SIZE = (360, 480)  # network size measured when frames run at their native size


@dataclass(frozen=True)
class Plan:
    device: str                    # "cpu", "cuda:0", "intel_gpu", "intel_npu"
    precision: str
    backend: str
    weights: str | None            # the file that loads (None: random initialisation)
    arch: str | None
    reason: str
    meta: dict = field(default_factory=dict)  # the shipped model's metadata ("default" weights)
    measured: dict = field(default_factory=dict)  # "backend/precision[ two at once]" -> ms per frame

    @property
    def device_type(self):
        return device_type(self.device)

    @property
    def streams_gain(self):
        """Measured frames/s of the chosen candidate with two calls at once over one, or None."""
        label = f"{self.backend}/{self.precision}"
        one, two = self.measured.get(label), self.measured.get(label + TWO_AT_ONCE)
        return round(one / two, 3) if one and two else None


@dataclass(frozen=True)
class WeightFiles:
    float_file: str | None         # .pth or float .onnx (None with random init or int8-only)
    float_kind: object             # ".pth", ".onnx" or RANDOM_INIT
    float_precision: str | None    # fixed by a float .onnx export, else None (any)
    int8_file: str | None
    arch: str | None
    meta: dict


def make_plan(arch="mbv2", weights="default", device="auto", precision="auto", backend="auto",
              compile=False, input_size=None, cpu=None, measure=None):
    """The :class:`Plan` for a request; ``cpu`` (a :class:`.cpu.CpuInfo`, read when None) and
    ``measure`` (default :func:`.autotune.choose`) are arguments so every CPU can be tested."""
    if backend not in BACKEND_CHOICES:
        raise ValueError(f"backend must be one of {BACKEND_CHOICES}, got {backend!r}")
    check_precision_name(precision)
    device = _resolve_device(device)
    kind = device_type(device)
    files = weight_files(weights, arch)
    cpu = cpu_info() if cpu is None else cpu
    for precisions, why in _precision_tiers(precision, files, kind, cpu):
        candidates, refusals = _candidates(backend, precisions, kind, files, compile)
        if candidates:
            break
    else:
        raise ValueError(f"nothing can run precision {precision!r} on {device} with backend {backend!r}: "
                         + "; ".join(dict.fromkeys(refusals)))
    (name, chosen, file), how, measured = _choose(candidates, precisions, kind, files, input_size,
                                                  cpu, measure)
    reason = f"precision {chosen}: {why}; backend {name}: {how}"
    return Plan(device, chosen, name, file, files.arch, reason, files.meta, measured)


def _resolve_device(device):
    problem = device_name_problem(device)
    if problem:
        raise ValueError(problem)
    if device.startswith("intel_"):
        return device
    resolved = resolve_device(device)
    return "cpu" if resolved.type == "cpu" else f"cuda:{resolved.index}"


def weight_files(weights, arch=None):
    """The files a request may load: "default" is the shipped model (and its int8 export)."""
    if isinstance(weights, str) and weights == "default":
        meta = model_metadata()
        if arch not in (None, meta["arch"]):
            raise ValueError(f"the default model is {meta['arch']!r}, not arch={arch!r}; pass "
                             f"weights=PATH for another architecture")
        for key in ("weights", "int8_weights"):
            if key in meta and not os.path.isfile(meta[key]):
                raise FileNotFoundError(
                    f"default model weights {meta[key]} not found: the shipped model is not installed "
                    f"(train it with refinenet-train, then re-run scripts/setup.sh) or pass weights=PATH")
        return WeightFiles(meta["weights"], ".pth", None, meta.get("int8_weights"), meta["arch"], meta)
    if weights is None:
        return WeightFiles(None, RANDOM_INIT, None, None, arch, {})
    path = os.fspath(weights)
    if not path.lower().endswith(".onnx"):
        return WeightFiles(path, ".pth", None, None, arch, {})
    exported = onnx_metadata(path).get("precision") or "fp32"
    if exported == INT8:
        return WeightFiles(None, ".onnx", None, path, arch, {})
    return WeightFiles(path, ".onnx", exported, None, arch, {})


def onnx_metadata(path):
    """The refinenet_ros metadata of an ONNX file, read without loading a runtime."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ONNX model not found: {path}")
    import onnx
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for a corrupt file
        raise ValueError(f"cannot load ONNX model {path}: {exc}") from exc
    return {p.key: p.value for p in model.metadata_props}


def _candidates(backend, precisions, kind, files, compile):
    """([(backend, precision, file)] that can run, [why others cannot])."""
    candidates, refusals = [], []
    for name in ([backend] if backend != "auto" else list(BACKENDS)):
        for p in precisions:
            file, file_kind = (files.int8_file, ".onnx") if p == INT8 else (files.float_file, files.float_kind)
            refusal = BACKENDS[name].refusal(kind, p, file_kind, compile)
            (refusals.append(refusal) if refusal else candidates.append((name, p, file)))
    return candidates, refusals


def _precision_tiers(requested, files, kind, cpu):
    """[(candidate precisions, why)], best first: a later tier is for backends that run none
    of an earlier one (``backend: torch`` with the shipped int8 model runs its float model)."""
    if requested == INT8:
        if files.float_precision is not None:
            raise ValueError(f"{files.float_file} was exported in {files.float_precision} and runs as it "
                             f"is; precision='int8' is not available (export it with --int8)")
        if files.int8_file is None:
            raise ValueError(_no_int8_message(files))
        check_precision_supported(INT8, kind)
        return [([INT8], "as asked")]
    if requested != "auto":
        return [(_explicit_float(requested, files, kind), "as asked")]
    tiers = []
    if files.int8_file is not None and kind != "cuda":
        tiers.append(([INT8], "auto: an int8 model exists for these weights (precision: fp32 for the "
                              "float model)"))
    if files.float_file is None and files.int8_file is not None:
        if not tiers:
            raise ValueError(f"{files.int8_file} is an int8 model, which does not run on {kind}")
        return tiers
    return tiers + [_float_tier(files, kind, cpu)]


def _explicit_float(requested, files, kind):
    if files.float_file is None and files.int8_file is not None:
        raise ValueError(f"{files.int8_file} was exported in int8 and runs as it is; precision="
                         f"{requested!r} is not available (use 'auto' or 'int8')")
    if files.float_precision not in (None, requested):
        raise ValueError(f"{files.float_file} was exported in {files.float_precision} and runs as it "
                         f"is; precision={requested!r} is not available (use 'auto' or "
                         f"{files.float_precision!r})")
    check_precision_supported(requested, kind)
    return [requested]


def _float_tier(files, kind, cpu):
    if files.float_precision is not None:
        return [files.float_precision], f"auto: the precision {files.float_file} was exported in"
    if kind != "cpu":
        return ["fp16"], f"auto: fp16 on {kind}"
    if cpu.native_bf16:
        return ["fp32", "bf16"], (f"auto: fp32, or bf16 where measured faster with >= 99% of labels "
                                  f"as fp32 ({cpu.cpu_class} CPU)")
    return ["fp32"], f"auto: fp32 ({cpu.cpu_class} CPU: no native bf16)"


def _no_int8_message(files):
    source = files.float_file or "WEIGHTS.pth"
    return (f"precision 'int8' runs a quantised ONNX export; make one with 'refinenet-export "
            f"--weights {source} --output model_int8.onnx --int8 FRAMES' (FRAMES: a folder or list of "
            f"calibration images) and pass weights=model_int8.onnx")


def _choose(candidates, precisions, kind, files, input_size, cpu, measure):
    """((backend, precision, file), how, measured) among the runnable candidates."""
    if len(candidates) == 1:
        return candidates[0], "the one that runs this request", {}
    if kind == "cuda":
        preferred = [c for c in candidates if c[0] == ("torch" if files.float_kind != ".onnx" else "onnxruntime")]
        return (preferred or candidates)[0], "on CUDA: fused PyTorch for .pth weights", {}
    if measure is None:
        from .autotune import choose as measure
    size = tuple(input_size) if input_size else tuple(files.meta.get("input_size") or DEFAULT_MEASURE_SIZE)
    decision = measure(candidates, arch=files.arch, size=size, cpu=cpu)
    if decision is not None:
        return decision
    order = sorted(candidates, key=lambda c: (precisions.index(c[1]), STATIC_PREFERENCE.index(c[0])))
    return order[0], f"not measured: the first of {', '.join(STATIC_PREFERENCE)}", {}
