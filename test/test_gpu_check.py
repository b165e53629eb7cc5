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
    assert "not supported on the CPU" in report["engine_fps"]["fp16"]["skipped"]
    assert set(report["engine_fps"]["fp32"]) == {"1", "2"} and all(v > 0 for v in report["engine_fps"]["fp32"].values())
    assert "needs CUDA" in report["anchor_fps"]["skipped"]
    assert report["cameras_8"]["ratio"] > 0 and report["training"]["iterations_per_s"] > 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_engine_is_measured_beside_the_graph_anchor(repo_root):
    report = _run(repo_root)
    assert set(report["anchor_fps"]) == {"1", "2"} and set(report["engine_vs_anchor"]) == {"1", "2"}
    assert report["fp16_labels_as_fp32"] >= 0.999 and report["peak_gpu_memory_mb"] > 0
