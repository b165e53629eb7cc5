"""The demo end to end: a short video written here -> image_source -> segmentation_node (real
processes and topics, a tiny random checkpoint) -> side-by-side PNGs and a report."""
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy")


def write_video(path, frames=12, size=(96, 64)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, size)
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for i in range(frames):
        frame = np.full((size[1], size[0], 3), 40 + 15 * i, np.uint8)
        frame[:, : size[0] // 2] = rng.integers(0, 255, 3, dtype=np.uint8)
        writer.write(frame)
    writer.release()


@pytest.fixture
def tiny_weights(tmp_path):
    import torch

    from refinenet_ros.models import create_model

    torch.manual_seed(0)
    path = tmp_path / "tiny.pth"
    torch.save(create_model("mbv2", 5).state_dict(), path)
    return path


def run_demo(repo_root, args, domain_id, **extra_env):
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), PYTHONUNBUFFERED="1", **extra_env)
    return subprocess.run([sys.executable, "-m", "refinenet_ros.tools.demo", *args], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_demo_writes_pictures_and_report(repo_root, tmp_path, tiny_weights):
    video, output = tmp_path / "street.avi", tmp_path / "out"
    write_video(video)
    result = run_demo(repo_root, ["--source", str(video), "--weights", str(tiny_weights), "--device", "cpu",
                                  "--frames", "6", "--warmup", "1", "--snapshots", "3", "--rate", "10",
                                  "--output", str(output)], domain_id=53)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((output / "report.json").read_text())
    assert report["measured_frames"] == 6 and report["output_fps"] > 0
    assert report["node_frames_in_flight"]  # measured once the node had chosen it
    flicker = report["label_flicker"]  # None where no pixel of this synthetic video stands still
    assert flicker is None or 0 <= flicker < 0.5
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["max"]
    assert report["device"] == "cpu" and report["source_name"] == "street.avi"
    assert report["classes_seen"] and all(name.startswith("class_") for name in report["classes_seen"])
    assert abs(sum(report["classes_seen"].values()) - 1) < 0.01
    assert (output / "report.txt").read_text().startswith("refinenet_ros demo report")
    pngs = sorted(output.glob("frame_*.png"))
    assert [p.name for p in pngs] == report["snapshots"] and 1 <= len(pngs) <= 3
    picture = cv2.imread(str(pngs[0]))
    assert picture.shape[1] == 3 * 96 and picture.shape[0] > 64  # three panels over a legend
    assert picture.std() > 5  # not a blank image
    assert (output / "segmentation_node.log").is_file() and (output / "image_source.log").is_file()
    node_params = yaml.safe_load((output / "segmentation_node_params.yaml").read_text())["/**"]["ros__parameters"]
    assert node_params["weights"] == str(tiny_weights) and node_params["image_topics"] == ["/camera/image_raw"]


def test_demo_reports_missing_inputs_clearly(repo_root, tmp_path, tiny_weights):
    result = run_demo(repo_root, ["--source", str(tmp_path / "nope.mp4"), "--weights", str(tiny_weights),
                                  "--output", str(tmp_path / "out")], domain_id=54)
    assert result.returncode == 2 and "nope.mp4" in result.stderr and "does not exist" in result.stderr
    result = run_demo(repo_root, ["--weights", str(tmp_path / "missing.pth")], domain_id=54)
    assert result.returncode == 2 and "missing.pth does not exist" in result.stderr


def test_demo_says_when_the_shipped_model_is_missing(repo_root, tmp_path):
    models = tmp_path / "models"  # the metadata without its weights file, as in a broken install
    models.mkdir()
    shutil.copy(repo_root / "models" / "camvid_mbv2.json", models)
    result = run_demo(repo_root, ["--source", str(tmp_path), "--output", str(tmp_path / "out")], domain_id=54,
                      REFINENET_ROS_MODELS=str(models))
    assert result.returncode == 2
    assert "camvid_mbv2.pth" in result.stderr and "--weights" in result.stderr


def test_side_by_side_legend_uses_published_colours():
    from refinenet_ros.tools.demo_render import class_colours, side_by_side

    labels = np.zeros((20, 30), np.uint8)
    labels[:, 20:] = 2
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    color = palette[labels]
    assert class_colours(labels, color) == {0: (255, 0, 0), 2: (0, 0, 255)}
    picture = side_by_side(np.zeros((20, 30, 3), np.uint8), color, color, labels, ["a", "b", "c"])
    assert picture.shape[1] == 90 and picture.dtype == np.uint8
    # the legend's first swatch (largest class first: "a") is drawn in class a's colour
    legend = picture[20 + 28:]
    assert (legend == [255, 0, 0]).all(axis=-1).any() and (legend == [0, 0, 255]).all(axis=-1).any()
