"""The plan (engine/plan.py): which device, precision, backend and file a request runs, for every
CPU class this project has met, decided from CpuInfo arguments so any machine tests them all."""
import pytest
import torch

from refinenet_ros.engine.hardware.cpu import CPU_CLASSES, CpuInfo, cpu_info, parse_override
from refinenet_ros.engine.planning.plan import make_plan
from refinenet_ros.engine.backends import BACKENDS
from refinenet_ros.models import create_model

CPUS = {name: CpuInfo(f"emulated {name}", flags) for name, flags in CPU_CLASSES.items()}
INSTALLED = [name for name, spec in BACKENDS.items() if spec.installed()]


class Offered:
    """A measurement that measures nothing: it records what the plan offered and declines, so
    the plan's own order decides (as with REFINENET_ROS_AUTOTUNE=0)."""

    def __init__(self):
        self.candidates = None

    def __call__(self, candidates, **_):
        self.candidates = sorted((backend, precision) for backend, precision, _ in candidates)
        return None


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "mbv2_3.pth"
    torch.save(create_model("mbv2", 3).state_dict(), path)
    return str(path)


def test_cpu_info_reads_model_and_flags_and_takes_an_override(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse2 avx2 fma amx_bf16\n")
    info = cpu_info(cpuinfo, environ={})
    assert info.model == "Test CPU 9000" and {"avx2", "amx_bf16"} <= info.flags and info.native_bf16
    assert info.cpu_class == "avx2"  # amx_bf16 alone is not the whole AMX class
    emulated = cpu_info(cpuinfo, environ={"REFINENET_ROS_CPU": "amx"})
    assert emulated.cpu_class == "amx" and "emulating amx" in emulated.model
    assert cpu_info(cpuinfo, environ={"REFINENET_ROS_CPU": "avx2, fma"}).flags == {"avx2", "fma"}
    assert cpu_info(tmp_path / "missing", environ={}).flags == frozenset()
    with pytest.raises(ValueError, match="REFINENET_ROS_CPU"):
        parse_override(" , ")
    assert [CPUS[n].cpu_class for n in CPUS] == list(CPU_CLASSES)
    assert [CPUS[n].native_bf16 for n in CPUS] == [False, False, True, True]


@pytest.mark.parametrize("cpu", CPUS)
def test_shipped_model_runs_int8_on_every_cpu(cpu):
    offered = Offered()
    plan = make_plan(weights="default", device="cpu", cpu=CPUS[cpu], measure=offered)
    assert plan.precision == "int8" and plan.weights.endswith("_int8.onnx")
    assert "an int8 model exists" in plan.reason
    int8_backends = sorted(n for n in INSTALLED if "int8" in BACKENDS[n].runs["cpu"])
    if len(int8_backends) > 1:
        assert offered.candidates == [(n, "int8") for n in int8_backends]
    assert make_plan(weights="default", device="cpu", precision="fp32", cpu=CPUS[cpu],
                     measure=offered).weights.endswith(".pth")


@pytest.mark.parametrize("cpu", CPUS)
def test_float_weights_offer_bf16_only_where_the_cpu_has_it(cpu, weights):
    offered = Offered()
    plan = make_plan(weights=weights, device="cpu", cpu=CPUS[cpu], measure=offered)
    assert plan.precision == "fp32" and plan.weights == weights  # nothing measured: fp32
    precisions = {precision for _, precision in offered.candidates}
    assert precisions == ({"fp32", "bf16"} if CPUS[cpu].native_bf16 else {"fp32"})
    assert ("onnxruntime", "bf16") not in offered.candidates  # it has no bf16 kernels


def test_a_measured_choice_is_taken_with_its_figures(weights):
    def measure(candidates, **_):
        chosen = next(c for c in candidates if c[0] == "torch" and c[1] == "bf16")
        return chosen, "measured", {"torch/bf16": 1.0}

    plan = make_plan(weights=weights, device="cpu", cpu=CPUS["amx"], measure=measure)
    assert (plan.backend, plan.precision, plan.measured) == ("torch", "bf16", {"torch/bf16": 1.0})
    assert plan.streams_gain is None  # not timed two at once


def test_the_measured_gain_of_two_streams_comes_with_the_plan(weights):
    def measure(candidates, **_):
        chosen = next(c for c in candidates if c[0] == "openvino" and c[1] == "fp32")
        return chosen, "measured", {"openvino/fp32": 50.0, "openvino/fp32 two at once": 40.0,
                                    "onnxruntime/fp32": 60.0}

    if not BACKENDS["openvino"].installed():
        pytest.skip("needs the openvino backend installed")
    plan = make_plan(weights=weights, device="cpu", cpu=CPUS["avx2"], measure=measure)
    assert (plan.backend, plan.streams_gain) == ("openvino", 1.25)


def test_explicit_choices_are_honoured_or_refused_with_the_reason(weights, tmp_path):
    amx = CPUS["amx"]
    plan = make_plan(weights=weights, device="cpu", backend="torch", precision="bf16", cpu=amx)
    assert (plan.backend, plan.precision) == ("torch", "bf16") and "as asked" in plan.reason
    # backend torch with the shipped model: its float weights, since torch runs no int8
    plan = make_plan(weights="default", device="cpu", backend="torch", cpu=amx, measure=Offered())
    assert (plan.backend, plan.precision) == ("torch", "fp32") and plan.weights.endswith(".pth")
    with pytest.raises(ValueError, match="torch backend does not run int8 on cpu"):
        make_plan(weights="default", device="cpu", backend="torch", precision="int8", cpu=amx)
    int8 = make_plan(weights="default", device="cpu", precision="int8", cpu=amx, measure=Offered()).weights
    with pytest.raises(ValueError, match="torch backend does not run int8"):
        make_plan(weights=int8, device="cpu", backend="torch", cpu=amx)
    with pytest.raises(ValueError, match="onnxruntime backend does not run bf16"):
        make_plan(weights=weights, device="cpu", backend="onnxruntime", precision="bf16", cpu=amx)
    with pytest.raises(ValueError, match="compile=True needs the torch backend"):
        make_plan(weights=weights, device="cpu", backend="onnxruntime", compile=True, cpu=amx)
    assert make_plan(weights=weights, device="cpu", compile=True, cpu=amx, measure=Offered()).backend == "torch"
    with pytest.raises(ValueError, match="torch backend does not run fp16 on intel_gpu"):
        make_plan(weights=weights, device="intel_gpu", precision="fp16", backend="torch", cpu=amx)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="int8' runs on the CPU"):
            make_plan(weights="default", device="cuda", precision="int8", cpu=amx)


def test_intel_devices_are_openvino_s(weights):
    if "openvino" not in INSTALLED:
        pytest.skip("openvino is not installed")
    plan = make_plan(weights=weights, device="intel_gpu", cpu=CPUS["amx"])
    assert (plan.device, plan.backend, plan.precision) == ("intel_gpu", "openvino", "fp16")
    with pytest.raises(ValueError, match="unknown device 'intel_tpu'"):
        make_plan(weights=weights, device="intel_tpu")
