"""The frame intake (newest frame per camera, fairness, waiting for the next frame, drops by
reason, the rules as pure functions) and the parameter files of the node (no DDS needed)."""
import threading
import time

import pytest
from rclpy.parameter import parameter_dict_from_yaml_file, parameter_value_to_python

from refinenet_ros.ros.intake import rules
from refinenet_ros.ros.intake.store import PendingFrame
from refinenet_ros.ros.intake.taking import FrameIntake
from refinenet_ros.ros.params import (
    PARAMETERS,
    check_value,
    read_list_file,
    sibling_topic,
)


def frame(camera, tag):
    return PendingFrame(camera, message=tag)


def test_a_new_frame_replaces_the_pending_one_and_counts_a_drop():
    slots = FrameIntake(2)
    assert not slots.put(frame(0, "a1"))
    assert slots.put(frame(0, "a2"))
    assert [f.message for f in slots.take(4, timeout=0.0)] == ["a2"]
    assert slots.dropped()["replaced"] == [1, 0]
    assert slots.take(4, timeout=0.0, idle_timeout=0.01) == []  # nothing queued behind it


def test_take_batches_cameras_round_robin_up_to_the_limit():
    slots = FrameIntake(3)
    for camera in (2, 0, 1):
        slots.put(frame(camera, f"c{camera}"))
    assert [f.message for f in slots.take(2, timeout=0.0)] == ["c0", "c1"]
    slots.put(frame(0, "c0 again"))
    assert [f.message for f in slots.take(2, timeout=0.0)] == ["c2", "c0 again"]  # 2 first: after 1


@pytest.mark.parametrize("cameras, batch, takes_per_cycle", [(8, 4, 1), (5, 4, 1), (3, 1, 1), (6, 2, 2)])
def test_overload_serves_every_camera_its_share(cameras, batch, takes_per_cycle):
    """Cameras publish in the same order every cycle, faster than frames are served: with
    newest-frame replacement, round robin still serves all of them alike (the old
    oldest-frame-first rule served the late publishers 9 times in 75)."""
    slots = FrameIntake(cameras)
    served = [0] * cameras
    for cycle in range(60):
        for camera in range(cameras):
            slots.put(frame(camera, cycle))
        for _ in range(takes_per_cycle):
            for taken in slots.take(batch, timeout=0.0):
                served[taken.camera] += 1
    mean = sum(served) / cameras
    assert min(served) >= 0.8 * mean and max(served) <= 1.2 * mean, served


def test_take_waits_for_other_active_cameras_within_the_timeout():
    slots = FrameIntake(2)
    slots.put(frame(0, "a"))
    slots.put(frame(1, "b"))
    slots.take(2, timeout=0.0)  # both cameras are now active
    slots.put(frame(0, "a"))
    threading.Timer(0.05, lambda: slots.put(frame(1, "b"))).start()
    assert sorted(f.message for f in slots.take(2, timeout=5.0)) == ["a", "b"]


def test_a_stalled_camera_does_not_delay_the_others():
    slots = FrameIntake(2)
    slots.put(frame(0, "a"))  # camera 1 never sent anything
    start = time.monotonic()
    assert [f.message for f in slots.take(2, timeout=5.0)] == ["a"]
    assert time.monotonic() - start < 4.0


def camera_with_period(slots, period, frames=10, camera=0):
    """``frames`` frames of ``camera`` received ``period`` s apart, the last one just now."""
    now = time.monotonic()
    for k in range(frames):
        slots.put(PendingFrame(camera, message=f"f{k}", received=now - (frames - 1 - k) * period))
    return now


def test_a_stale_lone_frame_is_passed_over_for_the_cameras_next_one():
    slots = FrameIntake(1)
    period = 0.2
    camera_with_period(slots, period)  # f9, received now
    time.sleep(0.5 * period)  # f9 has waited past STALE_FRACTION of the period
    threading.Timer(0.5 * period, lambda: slots.put(frame(0, "next"))).start()
    assert [f.message for f in slots.take(1, timeout=0.0)] == ["next"]
    assert slots.dropped()["waited_for_next_frame"] == [1] and slots.dropped()["replaced"] == [9]


def test_a_fresh_frame_is_taken_at_once():
    slots = FrameIntake(1)
    camera_with_period(slots, period=1.0)
    start = time.monotonic()
    assert [f.message for f in slots.take(1, timeout=0.0)] == ["f9"]
    assert time.monotonic() - start < 0.3 and slots.dropped()["waited_for_next_frame"] == [0]


def test_a_stale_frame_is_taken_when_the_next_one_is_late_or_waiting_is_off():
    slots = FrameIntake(1)
    period = 0.1
    camera_with_period(slots, period)
    time.sleep(0.6 * period)
    start = time.monotonic()
    assert [f.message for f in slots.take(1, timeout=0.0)] == ["f9"]  # nothing came: kept at 1.5 periods
    assert 0.5 * period < time.monotonic() - start < 10 * period and slots.dropped()["waited_for_next_frame"] == [0]
    camera_with_period(slots, period)
    time.sleep(0.6 * period)
    start = time.monotonic()
    assert [f.message for f in slots.take(1, timeout=0.0, wait_for_next_frame=False)] == ["f9"]
    assert time.monotonic() - start < 0.5 * period


def test_no_wait_while_another_camera_has_a_frame_or_the_period_is_unknown():
    slots = FrameIntake(2)
    camera_with_period(slots, period=0.2)
    slots.put(frame(1, "other"))
    time.sleep(0.1)
    start = time.monotonic()
    assert sorted(f.message for f in slots.take(2, timeout=0.0)) == ["f9", "other"]
    assert time.monotonic() - start < 0.1
    slots = FrameIntake(1)
    slots.put(frame(0, "first"))  # one frame: no period yet
    time.sleep(0.1)
    assert [f.message for f in slots.take(1, timeout=0.0)] == ["first"]


def test_another_cameras_frame_ends_the_wait():
    slots = FrameIntake(2)
    camera_with_period(slots, period=1.0)
    time.sleep(0.5)
    threading.Timer(0.05, lambda: slots.put(frame(1, "other"))).start()
    start = time.monotonic()
    assert sorted(f.message for f in slots.take(2, timeout=0.0)) == ["f9", "other"]
    assert time.monotonic() - start < 0.9


def test_close_unblocks_take():
    slots = FrameIntake(1)
    threading.Timer(0.05, slots.close).start()
    assert slots.take(1, timeout=0.0, idle_timeout=30.0) == []


def test_the_rules_are_pure_functions_of_what_is_known():
    assert [rules.frames_wanted(4, active) for active in (0, 1, 3, 9)] == [1, 1, 3, 4]
    assert not rules.is_stale(0.5, None)  # period unknown: never
    assert not rules.is_stale(0.039, 0.1) and rules.is_stale(0.041, 0.1)
    assert rules.next_frame_deadline(10.0, 0.1) == pytest.approx(10.15)
    pending = [frame(camera, f"c{camera}") for camera in (0, 2, 3)]
    taken, start = rules.round_robin(pending, cameras=4, start=2, limit=2)
    assert [f.camera for f in taken] == [2, 3] and start == 0
    taken, start = rules.round_robin(pending, cameras=4, start=0, limit=8)
    assert [f.camera for f in taken] == [0, 2, 3] and start == 0
    assert rules.round_robin([], cameras=4, start=1, limit=2) == ([], 1)


def test_every_frame_not_segmented_is_counted_once_with_its_reason():
    intake = FrameIntake(2)
    intake.put(frame(0, "a"))
    intake.unwanted(0)  # nobody listens: this frame and the pending one
    intake.put(frame(1, "b"))
    intake.put(frame(1, "b2"))
    intake.close()  # b2 was pending
    dropped = intake.dropped()
    assert dropped == {"replaced": [0, 1], "waited_for_next_frame": [0, 0], "no_subscribers": [2, 0],
                       "stopped": [0, 1]}


def test_params_yaml_declares_every_parameter_with_its_default(repo_root):
    loaded = parameter_dict_from_yaml_file(str(repo_root / "config" / "params.yaml"), use_wildcard=True)
    assert set(loaded) == set(PARAMETERS)
    for name, parameter in loaded.items():
        default = PARAMETERS[name].default
        value = parameter_value_to_python(parameter.value)
        assert (list(value) if isinstance(default, list) else value) == default, name


@pytest.mark.parametrize("name,value,reason", [
    ("qos", "fast", "qos must be one of"),
    ("device", "gpu", "unknown device 'gpu'; use 'auto', 'cpu', 'cuda', 'cuda:N'"),
    ("image_topics", ["/a/image", "/a/image"], "duplicates"),
    ("image_topics", ["/a/image", "/a/image_rect"], "share a namespace"),
    ("weights", "/no/such/file.pth", "does not exist"),
    ("weights", "/tmp", "/tmp is a directory, not a file"),
    ("weights", "/dev/zero", "/dev/zero is not a regular file"),
    ("label_map", "/dev/null", "is not a regular file"),
    ("backend", "tensorrt", "backend must be one of"),
    ("transport", "theora", "transport must be one of"),
])
def test_check_value_explains_what_is_wrong(name, value, reason):
    assert reason in check_value(name, value)


def test_valid_values_pass_and_sibling_topics():
    assert check_value("device", "cuda:1") is None and check_value("image_topics", ["/a/i", "/b/i"]) is None
    assert sibling_topic("/cam/left/image_raw", "camera_info") == "/cam/left/camera_info"
    assert sibling_topic("/image", "segmentation/labels") == "/segmentation/labels"
    assert sibling_topic("image", "camera_info") == "camera_info"


def test_palette_and_class_name_files(tmp_path):
    (tmp_path / "palette.yaml").write_text("- [0, 0, 0]\n- [255, 0, 10]\n")
    (tmp_path / "palette.txt").write_text("# r g b\n0 0 0\n255, 0, 10\n")
    (tmp_path / "names.txt").write_text("road\n\nsky  # comment\n")
    assert read_list_file(tmp_path / "palette.yaml", "palette") == [[0, 0, 0], [255, 0, 10]]
    assert read_list_file(tmp_path / "palette.txt", "palette") == [[0, 0, 0], [255, 0, 10]]
    assert read_list_file(tmp_path / "names.txt", "class_names") == ["road", "sky"]
    with pytest.raises(ValueError, match="cannot read palette file"):
        read_list_file(tmp_path / "missing.yaml", "palette")


def test_the_threshold_gives_younger_labels_where_segmenting_is_slower_than_the_camera():
    from refinenet_ros.tools.simulate_fresh_frames import simulate
    from refinenet_ros.ros.intake.rules import STALE_FRACTION
    period = 1000.0 / 30
    for segment_ms in (45.0, 100.0):  # slower than the camera: waiting pays
        never, rule = simulate(segment_ms, period, 1.0, 1500), simulate(segment_ms, period, STALE_FRACTION, 1500)
        assert rule[0] < 0.97 * never[0] and rule[1] < never[1], (segment_ms, never, rule)
    never, rule = simulate(20.0, period, 1.0, 1500), simulate(20.0, period, STALE_FRACTION, 1500)
    assert rule == pytest.approx(never, rel=0.01)  # faster than the camera: nothing changes
