"""One plan for a request: the user's ``arch``, ``weights``, ``device``, ``precision``,
``backend`` and ``streams`` become (device, precision, backend, weights file, frames in flight,
reason), decided here only.

The rules, stated once:

- ``precision: auto`` is int8 where an int8 model exists for the weights (the shipped one's
  export, or an int8 ``.onnx`` given as weights); else the precision of a float ``.onnx``; else
  fp16 on CUDA and an Intel GPU or NPU; else fp32 on a CPU, or bf16 where the CPU has native
  bf16 and a measurement finds bf16 faster with >= 99% of labels as fp32.
- ``backend: auto`` is the one installed backend that can run the request, and where several
  can, on a CPU, the fastest by measurement (:mod:`.autotune`: timed in child processes,
  cached per CPU, runtime versions, weights file, network size and precision). Without a
  measurement (``REFINENET_ROS_AUTOTUNE=0``) :data:`.backends.STATIC_PREFERENCE` decides. On
  CUDA PyTorch runs ``.pth`` weights (fused fp16, batches); an Intel GPU or NPU is OpenVINO's.
- ``streams`` (frames in flight) as :mod:`.streams` decides, with the measured gain of two.
- An explicit ``backend`` or ``precision`` is honoured exactly, or refused with the reason.
"""
import os
from dataclasses import dataclass, field, replace

from ...choices import BACKENDS as BACKEND_CHOICES
from ..backends import BACKENDS, RANDOM_INIT, STATIC_PREFERENCE
from ..hardware.cpu import cpu_info
from ..hardware.devices import device_name_problem, device_type
from ..hardware.precision import INT8, check_precision_name, check_precision_supported, device_name
from ..model.description import ModelDescription, describe
from ..model.files import file_problem
from ..model.shipped import default_weights
from .streams import TWO_AT_ONCE, check_streams, resolve_streams

DEFAULT_MEASURE_SIZE = (360, 480)  # network size measured when frames run at their native size


@dataclass(frozen=True)
class Plan:
    """What was decided for a request; the loader's one input, kept beside the network."""
    device: str                    # "cpu", "cuda:0", "intel_gpu", "intel_npu"
    precision: str
    backend: str
    weights: str | None            # the file that loads (None: random initialisation)
    arch: str | None
    reason: str
    description: ModelDescription     # what the model is (classes, input, output)
    measured: dict = field(default_factory=dict)  # "backend/precision[ two at once]" -> ms per frame
    num_classes: int | None = None    # classes of a randomly initialised model (None: 21)
    compile: bool = False
    streams: int = 1                  # calls that may run at once (frames in flight)
    alternatives: tuple = ()          # (device, backend, precision, file), this plan's own first, then
                                      # what runs if it fails at run time (best first)

    @property
    def device_type(self):
        return device_type(self.device)

    @property
    def streams_gain(self):
        """Measured frames/s of the chosen candidate with two calls at once over one, or None."""
        return _streams_gain(self.backend, self.precision, self.measured)


@dataclass(frozen=True)
class WeightFiles:
    float_file: str | None         # .pth or float .onnx (None with random init or int8-only)
    float_kind: object             # ".pth", ".onnx" or RANDOM_INIT
    float_precision: str | None    # fixed by a float .onnx export, else None (any)
    int8_file: str | None
    arch: str | None
    description: ModelDescription


def make_plan(*, arch="mbv2", weights="default", device="auto", precision="auto", backend="auto",
              compile=False, input_size=None, num_classes=None, streams=1, model_info=None, cpu=None,
              measure=None):
    """The :class:`Plan` for a request; ``cpu`` (a :class:`..hardware.cpu.CpuInfo`, read when
    None) and ``measure`` (default :func:`.autotune.choose`) are arguments so every CPU can be
    tested."""
    if backend not in BACKEND_CHOICES:
        raise ValueError(f"backend must be one of {BACKEND_CHOICES}, got {backend!r}")
    check_precision_name(precision)
    streams = check_streams(streams)
    device = _resolve_device(device)
    kind = device_type(device)
    files = weight_files(weights, arch, model_info)
    cpu = cpu_info() if cpu is None else cpu
    for precisions, why in _precision_tiers(precision, files, kind, cpu):
        candidates, refusals = _candidates(backend, precisions, kind, files, compile)
        if candidates:
            break
    else:
        raise ValueError(f"nothing can run precision {precision!r} on {device} with backend {backend!r}: "
                         + "; ".join(dict.fromkeys(refusals)))
    (name, chosen, file), how, measured = _choose(candidates, precisions, kind, files, input_size,
                                                  cpu, measure, model_info)
    gain = _streams_gain(name, chosen, measured)
    return Plan(device, chosen, name, file, files.arch, f"precision {chosen}: {why}; backend {name}: {how}",
                files.description, measured, num_classes, bool(compile),
                resolve_streams(streams, BACKENDS[name], kind, gain),
                _alternatives((device, name, chosen, file), precision, files, cpu, compile, measured))


def _alternatives(chosen, precision, files, cpu, compile, measured):
    """What runs if the chosen candidate fails at run time, best first after it: every installed
    backend that runs the request on its device in the requested precision's tiers, the measured
    ones fastest first, then by static preference; off a CPU, then the CPU's."""
    device = chosen[0]
    ranked = [chosen]
    for place in dict.fromkeys((device, "cpu")):
        try:
            tiers = _precision_tiers(precision, files, device_type(place), cpu)
        except ValueError:  # e.g. fp16 asked for: nothing on a CPU
            continue
        for precisions, _ in tiers:
            candidates, _ = _candidates("auto", precisions, device_type(place), files, compile)
            timed = {c: measured.get(f"{c[0]}/{c[1]}") for c in candidates}
            ranked += [(place, *c) for c in sorted(candidates, key=lambda c: (
                timed[c] is None, timed[c] or 0.0, precisions.index(c[1]), STATIC_PREFERENCE.index(c[0])))]
    return tuple(dict.fromkeys(ranked))


def _streams_gain(backend, precision, measured):
    label = f"{backend}/{precision}"
    one, two = measured.get(label), measured.get(label + TWO_AT_ONCE)
    return round(one / two, 3) if one and two else None


def _resolve_device(device):
    problem = device_name_problem(device)
    if problem:
        raise ValueError(problem)
    return device if device.startswith("intel_") else device_name(device)


def weight_files(weights, arch=None, model_info=None):
    """The files a request may load: "default" is the shipped model (and its int8 export)."""
    if isinstance(weights, str) and weights == "default":
        meta = default_weights(arch)
        return WeightFiles(meta["weights"], ".pth", None, meta.get("int8_weights"), meta["arch"],
                           describe("default", model_info))
    if weights is None:
        return WeightFiles(None, RANDOM_INIT, None, None, arch, _ours(describe(None, model_info), arch))
    path = os.fspath(weights)
    problem = file_problem(path, "weights file")
    if problem:
        raise (FileNotFoundError if not os.path.lexists(path) else ValueError)(problem)
    if not path.lower().endswith(".onnx"):
        return WeightFiles(path, ".pth", None, None, arch, _ours(describe(path, model_info), arch))
    description = describe(path, model_info)
    exported = description.precision or "fp32"
    if exported == INT8:
        return WeightFiles(None, ".onnx", None, path, description.arch, description)
    return WeightFiles(path, ".onnx", exported, None, description.arch, description)


def _ours(description, arch):
    """The description of this package's architecture ``arch`` (a .pth or random weights)."""
    return replace(description, arch=description.arch or arch or "mbv2")


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


def _choose(candidates, precisions, kind, files, input_size, cpu, measure, model_info):
    """((backend, precision, file), how, measured) among the runnable candidates."""
    if len(candidates) == 1:
        return candidates[0], "the one that runs this request", {}
    if kind == "cuda":
        preferred = [c for c in candidates if c[0] == ("torch" if files.float_kind != ".onnx" else "onnxruntime")]
        return (preferred or candidates)[0], "on CUDA: fused PyTorch for .pth weights", {}
    if measure is None:
        from .autotune import choose as measure
    described = files.description.input.size or files.description.extra.get("input_size")
    size = tuple(input_size) if input_size else tuple(described or DEFAULT_MEASURE_SIZE)
    extra = {"model_info": model_info} if model_info else {}
    decision = measure(candidates, arch=files.arch, size=size, cpu=cpu, **extra)
    if decision is not None:
        return decision
    order = sorted(candidates, key=lambda c: (precisions.index(c[1]), STATIC_PREFERENCE.index(c[0])))
    return order[0], f"not measured: the first of {', '.join(STATIC_PREFERENCE)}", {}
