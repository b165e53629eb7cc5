"""backend auto by measurement (engine/autotune.py): real candidates timed in child processes,
the decision cached and reused, a crashing runtime skipped, two starts at once measured once."""
import json
import os
import threading

import pytest
import torch

from refinenet_ros.engine.planning import autotune
from refinenet_ros.engine.hardware.cpu import cpu_info
from refinenet_ros.engine.backends import BACKENDS
from refinenet_ros.models import create_model

SIZE = (48, 64)
pytestmark = pytest.mark.slow  # each candidate is a child process that imports torch


@pytest.fixture
def weights(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "mbv2_3.pth"
    torch.save(create_model("mbv2", 3).state_dict(), path)
    return str(path)


@pytest.fixture
def measuring(monkeypatch, tmp_path):
    monkeypatch.setenv("REFINENET_ROS_AUTOTUNE", "1")
    return tmp_path / "cache"


def candidates(weights, *backends):
    installed = [b for b in backends if BACKENDS[b].installed()]
    if len(installed) < 2:
        pytest.skip(f"needs two of {backends} installed")
    return [(b, "fp32", weights) for b in installed]


def test_the_fastest_is_chosen_cached_and_reused(weights, measuring):
    offered = candidates(weights, "torch", "onnxruntime")
    chosen, how, figures = autotune.choose(offered, "mbv2", SIZE, cpu_info(), folder=measuring)
    assert chosen in offered and set(figures) == {"torch/fp32", "onnxruntime/fp32"}
    assert figures[f"{chosen[0]}/fp32"] == min(figures.values()) and "measured now" in how
    [cached] = measuring.glob("*.json")
    record = json.loads(cached.read_text())
    assert record["choice"] == f"{chosen[0]}/fp32" and record["results"]["onnxruntime/fp32"]["agreement"] == 1.0
    again = autotune.choose(offered, "mbv2", SIZE, cpu_info(), folder=measuring)
    assert again[0] == chosen and "measured earlier" in again[1]
    os.utime(weights, ns=(1, 1))  # another weights file (as far as the key can tell): measured anew
    assert "measured now" in autotune.choose(offered, "mbv2", SIZE, cpu_info(), folder=measuring)[1]
    for path in measuring.glob("*.json"):  # a corrupt cache is measured again, not trusted
        path.write_text("{ not json")
    assert "measured now" in autotune.choose(offered, "mbv2", SIZE, cpu_info(), folder=measuring)[1]


def test_a_backend_with_streams_is_also_timed_two_at_once(weights, measuring):
    offered = candidates(weights, "onnxruntime", "openvino")
    chosen, how, figures = autotune.choose(offered, "mbv2", SIZE, cpu_info(), folder=measuring)
    two = figures.get("openvino/fp32 two at once")
    if len(os.sched_getaffinity(0)) < 2:
        assert two is None  # one core: nothing to overlap
    else:
        assert two > 0 and "two at once" in how and "onnxruntime/fp32 two at once" not in figures


def test_a_runtime_that_dies_by_a_signal_is_skipped(weights, measuring, monkeypatch):
    offered = candidates(weights, "torch", "onnxruntime")
    monkeypatch.setenv("REFINENET_ROS_AUTOTUNE_FAULT", "onnxruntime")
    chosen, how, figures = autotune.choose(offered, "mbv2", SIZE, cpu_info(), folder=measuring)
    assert chosen[0] == "torch" and list(figures) == ["torch/fp32"]
    assert "onnxruntime/fp32 skipped: killed by SIGSEGV" in how


def test_two_starts_at_once_measure_once(weights, measuring):
    offered = candidates(weights, "torch", "onnxruntime")
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(
        autotune.choose(offered, "mbv2", SIZE, cpu_info(), folder=measuring))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers[0][0] == answers[1][0]
    assert sorted("measured now" in how for _, how, _ in answers) == [False, True]


def test_measuring_off_returns_no_decision(weights, monkeypatch, tmp_path):
    monkeypatch.setenv("REFINENET_ROS_AUTOTUNE", "0")
    assert autotune.choose([("torch", "fp32", weights)], "mbv2", SIZE, cpu_info(), folder=tmp_path) is None
