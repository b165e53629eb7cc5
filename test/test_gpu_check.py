"""The GPU check's benchmark (scripts/gpu_check.sh): a dry run on the CPU, where the CUDA-only
parts say why they are skipped; on CUDA, the engine beside the whole-pipeline graph anchor."""
import json
import subprocess
import sys

import pytest
import torch


def _run(repo_root, *args):
    done = subprocess.run([sys.executable, "-m", "refinenet_ros.tools.benchmark_gpu", "--batches", "1", "2",
                           "--seconds", "0.2", "--size", "96", "128", "--train-batch", "2", *args],
                          cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_the_gpu_benchmark_runs_its_cpu_half_and_says_what_it_skipped(repo_root):
    report = _run(repo_root, "--device", "cpu")
    assert "not supported on the CPU" in report["engine_fps"]["fp16 eager"]["skipped"]
    eager = report["engine_fps"]["fp32 eager"]
    assert set(eager) == {"1", "2"} and all(v > 0 for v in eager.values())
    assert "needs CUDA" in report["anchor_fps"]["skipped"]
    assert report["cameras_8"]["ratio"] > 0 and report["training"]["iterations_per_s"] > 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_engine_is_measured_beside_the_graph_anchor(repo_root):
    report = _run(repo_root)
    assert set(report["anchor_fps"]) == {"1", "2"} and set(report["engine_vs_anchor"]["fp16"]) == {"1", "2"}
    assert report["fp16_labels_as_fp32"] >= 0.999 and report["peak_gpu_memory_mb"] > 0
    assert all("refused" not in status for status in report["self_checks"].values()), report["self_checks"]


@pytest.mark.slow
def test_the_gpu_check_script_has_a_dry_run_on_a_cpu(repo_root, tmp_path):
    """scripts/gpu_check.sh --device cpu: its tests and benchmark end to end, one JSON at the end."""
    import os
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["scripts/gpu_check.sh", "--device", "cpu"], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((repo_root / "bench" / "gpu_check.json").read_text())
    assert report["tests"]["passed"] > 10 and report["tests"]["failures"] == []
    assert report["device"] == "cpu" and all(v > 0 for v in report["engine_fps"]["fp32 eager"].values())
    assert "need CUDA" in report["self_checks"]["skipped"]
