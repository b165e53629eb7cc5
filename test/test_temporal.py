"""The temporal filter of each camera's labels (engine/processing/temporal.py): flicker held, a strong
new label at once, a weak persistent one within two frames, the state moved with the image, and a
fresh start on a size change, a long gap, a restart or a scene cut; then through the Segmenter."""
import numpy as np
import pytest

from refinenet_ros import Segmenter
from refinenet_ros.engine.frames import synthetic_frame
from refinenet_ros.engine.processing.temporal import MAX_GAP_S, TemporalFilter

H, W = 96, 128


@pytest.fixture()
def scene():
    return synthetic_frame(H, W, seed=4)


def labelled(top_label, region_label, region_confidence, region=(slice(20, 60), slice(30, 90))):
    labels = np.full((H, W), top_label, np.uint8)
    confidence = np.full((H, W), 0.9, np.float32)
    labels[region], confidence[region] = region_label, region_confidence
    return labels, confidence


def test_a_flickering_region_holds_still_and_a_strong_new_label_wins_at_once(scene):
    temporal = TemporalFilter()
    region = (slice(20, 60), slice(30, 90))
    out, _ = temporal("cam", scene, *labelled(1, 2, 0.55), time=0.0)
    for k in range(1, 7):  # the region flickers between classes 2 and 3 at about even odds
        labels, confidence = labelled(1, 2 if k % 2 == 0 else 3, 0.5)
        out, support = temporal("cam", scene, labels, confidence, time=k / 30)
        assert (out[region] == 2).all(), f"frame {k}"
    assert (out[:10] == 1).all() and support.dtype == np.float32
    out, support = temporal("cam", scene, *labelled(1, 4, 0.95), time=7 / 30)  # a person walks in
    assert (out[region] == 4).all() and np.allclose(support[region], 0.95)


def test_a_weak_contradiction_that_persists_wins_within_two_frames(scene):
    temporal = TemporalFilter()
    temporal("cam", scene, *labelled(1, 2, 0.6), time=0.0)
    first, _ = temporal("cam", scene, *labelled(1, 3, 0.55), time=1 / 30)
    second, _ = temporal("cam", scene, *labelled(1, 3, 0.55), time=2 / 30)
    assert (first[30:50, 40:80] == 2).all() and (second[30:50, 40:80] == 3).all()


def test_the_state_moves_with_the_image(scene):
    temporal = TemporalFilter()
    labels, confidence = labelled(1, 2, 0.9)
    temporal("cam", scene, labels, confidence, time=0.0)
    shifted_scene, shifted_labels = np.roll(scene, 6, axis=1), np.roll(labels, 6, axis=1)
    weak = np.full((H, W), 0.3, np.float32)  # the new frame barely knows: the moved state decides
    noisy = shifted_labels.copy()
    noisy[::7, ::5] = 5
    out, _ = temporal("cam", shifted_scene, noisy, weak, time=1 / 30)
    inside = (slice(25, 55), slice(45, 85))
    assert (out[inside] == 2).mean() > 0.99 and (out[inside] != 5).all()


@pytest.mark.parametrize("change", ["size", "gap", "restart", "scene cut"])
def test_the_state_starts_afresh(scene, change):
    temporal = TemporalFilter()
    temporal("cam", scene, *labelled(1, 2, 0.99), time=10.0)
    frame, time, (labels, confidence) = scene, 10.0 + 1 / 30, labelled(1, 3, 0.2)
    if change == "size":
        frame = synthetic_frame(H // 2, W // 2, seed=4)
        labels, confidence = labels[::2, ::2], confidence[::2, ::2]
    elif change == "gap":
        time = 10.0 + 2 * MAX_GAP_S
    elif change == "restart":
        time = 3.0
    else:
        frame = 255 - synthetic_frame(H, W, seed=9)
    out, support = temporal("cam", frame, labels, confidence, time=time)
    np.testing.assert_array_equal(out, labels)  # no ghost of the old scene
    np.testing.assert_array_equal(support, confidence)


def test_cameras_are_filtered_apart_and_labels_models_pass_through(scene):
    temporal = TemporalFilter()
    temporal("left", scene, *labelled(1, 2, 0.9), time=0.0)
    out, _ = temporal("right", scene, *labelled(1, 3, 0.2), time=1 / 30)
    assert (out[30:50, 40:80] == 3).all()  # the left camera's state is not the right one's
    labels, _ = labelled(1, 3, 0.2)
    assert temporal("left", scene, labels, None, time=1 / 30) == (labels, None)


def test_the_segmenter_filters_per_camera_only_when_asked():
    seg = Segmenter(weights=None, num_classes=5, device="cpu", precision="fp32", backend="torch",
                    temporal_filter=True)
    frames = [synthetic_frame(H, W, seed=s) for s in (1, 2)]
    plain = seg.segment(frames)  # no cameras: per-frame results, as without the filter
    again = seg.segment(frames, cameras=["a", "b"], times=[0.0, 0.0], with_color=True)
    for p, a in zip(plain, again):
        np.testing.assert_array_equal(p.labels, a.labels)  # a first frame is its own estimate
        np.testing.assert_array_equal(a.color, seg.palette[a.labels])
        assert a.confidence is None
    later = seg.segment(frames, cameras=["a", "b"], times=[0.04, 0.04], with_confidence=True)
    assert all(r.confidence is not None and r.confidence.dtype == np.float32 for r in later)
    assert "temporal" in seg.last_timings
    seg.temporal_filter = False
    assert not seg.temporal_filter and "temporal" not in (seg.segment(frames, cameras=["a", "b"]) and
                                                          seg.last_timings)


def test_flicker_counts_label_changes_where_the_image_stands_still():
    from refinenet_ros.tools.demo_render import FlickerCount, still_changes
    frame = synthetic_frame(H, W, seed=1)
    moved = frame.copy()
    moved[:, W // 2:] = 255 - moved[:, W // 2:]  # the right half changes
    a, b = np.zeros((H, W), np.uint8), np.zeros((H, W), np.uint8)
    b[:, ::2] = 1  # every other column changes label
    changed, still = still_changes(frame, moved, a, b)
    assert 0 < still < H * W // 2 + H * 3 and changed == pytest.approx(still / 2, rel=0.05)
    count = FlickerCount()
    for labels in (a, b, a):
        count.add(frame, labels)
    assert count.share() == 0.5 and FlickerCount().share() is None


@pytest.mark.slow
def test_the_temporal_benchmark_runs_end_to_end(camvid_root, tmp_path, capsys):
    import json

    import cv2

    from refinenet_ros.tools import benchmark_temporal
    video = tmp_path / "still.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (128, 96))
    for k in range(6):
        writer.write(cv2.cvtColor(synthetic_frame(96, 128, seed=1), cv2.COLOR_RGB2BGR))
    writer.release()
    assert benchmark_temporal.main(["--frames", str(camvid_root / "val.txt"), "--video", str(video),
                                    "--video-frames", "6", "--clips", "1", "--clip-length", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["fixed_camera"]["frames"] == 6 and 0 <= report["fixed_camera"]["flicker_filtered"] <= 1
    assert 0 < report["moving_clips"]["miou_filtered"] <= 100 and report["cost_640x480"]["filter_ms"] > 0
    assert report["lag_frames"] is None or 0 <= report["lag_frames"] <= 12
