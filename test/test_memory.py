"""Memory back after a spike: one 7680x4320 frame among VGA ones leaves the node's resident
memory within 300 MB of its level before, 5 s later, on every backend (the real node and Fast
DDS with the shipped profile, tools/benchmark_memory.py, one child process per backend)."""
import json
import os
import subprocess
import sys

import pytest

from refinenet_ros.engine.backends import BACKENDS

pytestmark = [pytest.mark.slow, pytest.mark.ros]


@pytest.mark.parametrize("backend", [name for name, spec in BACKENDS.items() if spec.installed()])
def test_rss_returns_after_one_8k_frame(backend, repo_root, tmp_path):
    env = dict(os.environ, ROS_LOG_DIR=str(tmp_path), FASTRTPS_DEFAULT_PROFILES_FILE=str(
        repo_root / "config" / "fastdds.xml"), RMW_FASTRTPS_USE_QOS_FROM_XML="1")
    done = subprocess.run([sys.executable, "-m", "refinenet_ros.tools.benchmark_memory", "--backends", backend,
                           "--settle", "5", "--domain-id", "61"], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    [result] = json.loads(done.stdout)["results"]
    assert "failed" not in result, result
    assert result["spike_segmented"] and result["backend"] == backend
    assert result["rss_mb_peak"] > result["rss_mb_before"] + 300  # the frame really cost memory
    assert result["settled_minus_before_mb"] < 300, result
