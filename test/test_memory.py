"""Memory back after spikes: after a 3840x2160 frame then a 7680x4320 one, and after three
3840x2160 frames in a row, with few ordinary frames before them, the node's resident memory is
within 300 MB of its level before, 5 s later, on every backend (the real node and Fast DDS with
the shipped profile, tools/benchmark_memory.py, one child process per backend)."""
import json
import os
import subprocess
import sys

import pytest

from refinenet_ros.engine.backends import BACKENDS

pytestmark = [pytest.mark.slow, pytest.mark.ros]


@pytest.mark.parametrize("backend", [name for name, spec in BACKENDS.items() if spec.installed()])
def test_rss_returns_after_big_frames_in_any_order(backend, repo_root, tmp_path):
    env = dict(os.environ, ROS_LOG_DIR=str(tmp_path), FASTRTPS_DEFAULT_PROFILES_FILE=str(
        repo_root / "config" / "fastdds.xml"), RMW_FASTRTPS_USE_QOS_FROM_XML="1")
    done = subprocess.run([sys.executable, "-m", "refinenet_ros.tools.benchmark_memory", "--backends", backend,
                           "--settle", "5", "--domain-id", "61", "--before-frames", "2", "--orders",
                           "3840x2160,7680x4320", "3840x2160,3840x2160,3840x2160"],
                          cwd=repo_root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    [result] = json.loads(done.stdout)["results"]
    assert "failed" not in result, result
    assert result["backend"] == backend
    for order in result["orders"]:
        assert order["spikes_segmented"], order
        assert order["rss_mb_peak"] > result["rss_mb_before"] + 300, order  # the frames really cost memory
        assert order["settled_minus_before_mb"] < 300, (result["rss_mb_before"], order)
