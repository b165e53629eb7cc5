"""Label age, and the intake mode chosen by it: the time-weighted age of the newest label on a
known timeline; the live trial's choice between modes on simulated label timelines (ros/intake has
no ROS in it); and the real node choosing on its live camera, reporting label age on /diagnostics,
and refusing frames in flight that its backend cannot run."""
import threading

import numpy as np
import pytest
import rclpy
from conftest import wait_until
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from refinenet_ros.ros.conversions import numpy_to_image
from refinenet_ros.ros.intake.age import LabelAge, mean_age_ms
from refinenet_ros.ros.intake.trial import IntakeMode, LiveTrial, TrialState
from refinenet_ros.ros.node import SegmentationNode, StartupError


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_label_age_is_the_time_weighted_age_of_the_newest_label():
    clock = Clock()
    age = LabelAge(2, clock=clock)
    clock.now = 1.0
    age.published(0, received_at=0.8)   # 0.2 s old when published
    clock.now = 2.0
    age.published(0, received_at=1.7)
    clock.now = 3.0
    # 1 -> 2: from 0.2 to 1.2 s old (mean 0.7); 2 -> 3: from 0.3 to 1.3 (mean 0.8): 750 ms
    assert age.ages_ms()[0] == pytest.approx(750.0)
    assert age.ages_ms()[1] is None and age.mean_ms() == pytest.approx(750.0)
    age.reset()  # camera 0 keeps its newest label: measured from now on
    clock.now = 4.0
    assert age.ages_ms()[0] == pytest.approx(1800.0)  # 1.3 -> 2.3 s old
    assert age.labels() == [0, 0]


def test_the_age_from_a_client_s_arrivals_is_the_same_integral():
    # labels arriving at 1 s and 2 s, 0.2 s and 0.3 s old on arrival, then a third at 3 s
    assert mean_age_ms([(1.0, 0.2), (2.0, 0.3), (3.0, 0.1)]) == pytest.approx(750.0)
    assert mean_age_ms([(1.0, 0.2)]) is None


def _simulate(choice, timelines, seconds=60.0, rate=30.0, memory=None, log=None):
    """Run ``choice`` with labels following ``timelines[c]`` = (period, latency) while candidate
    c is in force (the candidates: the keys, in order); returns the candidates applied, in order."""
    clock, applied = Clock(), []
    age = LabelAge(1, clock=clock)
    chooser = LiveTrial(list(timelines), applied.append, age, lambda: rate, clock=clock, memory=memory,
                        log=(lambda line: None) if log is None else log.append)
    next_label = 0.0
    while clock.now < seconds:
        clock.now = round(clock.now + 0.05, 3)
        period, latency = timelines[chooser.mode]
        if clock.now >= next_label:
            age.published(0, received_at=clock.now - latency)
            next_label = clock.now + period
        chooser.tick()
        if choice is not None:
            rate = choice(clock.now, rate)
    return chooser, applied


def test_the_count_with_the_youngest_labels_is_kept():
    # one in flight: a label every 0.5 s, 0.3 s old; two: every 0.4 s but 0.7 s old -> one
    chooser, applied = _simulate(None, {1: (0.5, 0.3), 2: (0.4, 0.7)})
    assert chooser.mode == 1 and applied[:2] == [1, 2] and applied[-1] == 1 and chooser.state is TrialState.DECIDED
    assert chooser.figures[1] < chooser.figures[2] and "youngest labels" in chooser.note
    # two in flight twice as often at the same latency: younger labels -> two
    chooser, applied = _simulate(None, {1: (0.6, 0.5), 2: (0.3, 0.5)})
    assert chooser.mode == 2 and applied[-1] == 2


def test_not_waiting_for_the_next_frame_is_kept_where_it_gives_younger_labels():
    # a CPU that segments slower after idling: waiting for the next frame gives fewer, older labels
    timelines = {IntakeMode(1, True): (0.05, 0.05), IntakeMode(1, False): (0.04, 0.045),
                 IntakeMode(2, True): (0.04, 0.08), IntakeMode(2, False): (0.035, 0.08)}
    chooser, applied = _simulate(None, timelines)
    assert applied[:4] == list(timelines) and chooser.mode == IntakeMode(1, False) == applied[-1]
    assert ("1, not waiting for the next frame (youngest labels: 1, not waiting for the next frame:"
            in chooser.note)


def test_a_marked_change_of_the_input_rate_runs_the_trial_again():
    def halve_at_30_s(now, rate):
        return 10.0 if now > 30.0 else rate
    chooser, applied = _simulate(halve_at_30_s, {1: (0.5, 0.3), 2: (0.4, 0.7)})
    assert applied.count(2) == 2  # tried at the start and again after the change
    assert chooser.mode == 1


def test_a_camera_that_pauses_and_resumes_is_not_a_new_load():
    def pause_from_20_to_28_s(now, rate):  # as the node's 3 s rate window sees it
        if now < 20.0 or now > 31.0:
            return 30.0
        if now < 23.0:
            return 30.0 * (23.0 - now) / 3.0
        return 0.0 if now < 28.0 else 30.0 * (now - 28.0) / 3.0
    chooser, applied = _simulate(pause_from_20_to_28_s, {1: (0.5, 0.3), 2: (0.4, 0.7)})
    assert applied.count(2) == 1 and chooser.mode == 1  # tried once, at the start


def test_a_restart_under_the_same_conditions_starts_in_the_remembered_mode(tmp_path):
    from refinenet_ros.ros.intake.memory import TrialMemory
    timelines = {1: (0.5, 0.3), 2: (0.4, 0.7)}
    conditions = {"backend": "openvino", "cameras": 1}
    first, applied = _simulate(None, timelines, memory=TrialMemory(conditions, list(timelines), tmp_path))
    assert applied[:2] == [1, 2] and first.mode == 1 and not first.remembered
    lines = []
    again, applied = _simulate(None, {2: (0.4, 0.7), 1: (0.5, 0.3)}, log=lines,  # 2 would come first
                               memory=TrialMemory(conditions, [2, 1], tmp_path))
    assert applied == [1] and again.mode == 1 and again.remembered and again.state is TrialState.DECIDED
    assert len(lines) == 1 and "remembered from an earlier start" in lines[0] and "no trial" in lines[0]
    assert "remembered from an earlier start; youngest labels: 1:" in again.note
    # another input rate's band, other cameras, a corrupt record: a trial decides
    _, applied = _simulate(None, timelines, rate=10.0, memory=TrialMemory(conditions, list(timelines), tmp_path))
    assert applied[:2] == [1, 2]
    _, applied = _simulate(None, timelines, memory=TrialMemory({**conditions, "cameras": 2}, [1, 2], tmp_path))
    assert applied[:2] == [1, 2]
    for record in tmp_path.glob("*.json"):
        record.write_text("{not json")
    _, applied = _simulate(None, timelines, memory=TrialMemory(conditions, list(timelines), tmp_path))
    assert applied[:2] == [1, 2]


def test_nothing_is_tried_below_one_frame_per_second():
    chooser, applied = _simulate(None, {1: (2.0, 0.3), 2: (2.0, 0.7)}, rate=0.5)
    assert applied == [] and chooser.state is TrialState.WAITING


def test_labels_much_older_than_the_decided_figure_try_the_modes_again(tmp_path):
    from refinenet_ros.ros.intake.memory import TrialMemory
    memory = TrialMemory({"cameras": 1}, [1, 2], tmp_path)
    memory.remember(30.0, 1, age_ms=100.0)  # remembered: 1 in flight gave labels 100 ms old
    lines = []
    # live, 1 in flight now gives labels about 350 ms old: over 1.25x the remembered figure
    chooser, applied = _simulate(None, {1: (0.5, 0.1), 2: (0.4, 0.7)}, memory=memory, log=lines, seconds=40.0)
    assert lines[0].startswith("frames in flight: 1 (remembered")
    assert any("ms old against 100 ms when 1 was chosen: trying the modes again" in line for line in lines)
    assert applied[:2] == [1, 2] and not chooser.remembered  # both tried again on the live cameras


def test_without_two_candidates_nothing_is_tried():
    applied = []
    chooser = LiveTrial([2], applied.append, LabelAge(1), lambda: 30.0)
    assert chooser.tick() is None and applied == [] and chooser.note == "2 (fixed)"


@pytest.mark.ros
@pytest.mark.slow
def test_the_node_chooses_frames_in_flight_on_its_live_camera_and_reports_label_age(tmp_path):
    pytest.importorskip("openvino")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=37)
    node = SegmentationNode(context=context, parameter_overrides=[
        Parameter("image_topics", value=["/fresh/image_raw"]), Parameter("weights", value="default"),
        Parameter("device", value="cpu"), Parameter("backend", value="openvino"),
        Parameter("precision", value="int8"), Parameter("frames_in_flight", value=0),
        Parameter("diagnostics_period", value=0.5)])
    client = rclpy.create_node("fresh_client", context=context)
    labels, reports = [], []
    client.create_subscription(Image, "/fresh/segmentation/labels", labels.append, 10)
    client.create_subscription(DiagnosticArray, "/diagnostics", reports.append, 10)
    publisher = client.create_publisher(Image, "/fresh/image_raw", qos_profile_sensor_data)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    for each in (node, client):
        executor.add_node(each)
    threading.Thread(target=executor.spin, daemon=True).start()
    frame = numpy_to_image(np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8), "rgb8")

    def values():
        return [dict((kv.key, kv.value) for kv in s.values) for r in list(reports) for s in r.status]
    try:
        chosen = wait_until(lambda: any("youngest labels" in v.get("frames_in_flight", "") for v in values()),
                            90, lambda: publisher.publish(frame), period=0.05)
        assert chosen, [v.get("frames_in_flight") for v in values()][-5:]
        assert node.segmenter.streams in (1, 2)
        ages = [float(v["label_age_ms"]) for v in values() if v.get("label_age_ms", "none yet") != "none yet"]
        assert ages and all(0 < a < 60000 for a in ages)
        assert {"latency_ms_p50", "latency_ms_p90", "output_fps", "dropped_waited_for_next_frame_total"} <= \
            set(values()[-2]) | set(values()[-1])
        count = len(labels)
        assert wait_until(lambda: len(labels) > count + 3, 30, lambda: publisher.publish(frame), period=0.05)
    finally:
        executor.shutdown()
        node.destroy_node()
        client.destroy_node()
        rclpy.shutdown(context=context)


@pytest.mark.ros
def test_two_frames_in_flight_are_refused_where_the_backend_runs_one_call_at_a_time():
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=38)
    try:
        with pytest.raises(StartupError, match="frames_in_flight 2: the onnxruntime backend runs one call "
                                               "at a time"):
            SegmentationNode(context=context, parameter_overrides=[
                Parameter("weights", value="default"), Parameter("device", value="cpu"),
                Parameter("backend", value="onnxruntime"), Parameter("frames_in_flight", value=2)])
    finally:
        rclpy.shutdown(context=context)


@pytest.mark.ros
@pytest.mark.slow
def test_the_freshness_benchmark_reports_label_age_per_setting(tmp_path, capsys):
    import json

    import cv2

    from refinenet_ros.tools import benchmark_freshness
    rng = np.random.default_rng(0)
    for k in range(4):
        cv2.imwrite(str(tmp_path / f"frame_{k}.png"), rng.integers(0, 256, (240, 320, 3), np.uint8))
    assert benchmark_freshness.main(["--frames", str(tmp_path), "--count", "4", "--rate", "15",
                                     "--width", "320", "--height", "240", "--warmup", "1", "--settle", "1",
                                     "--seconds", "3", "--rounds", "2", "--settings", "defaults",
                                     "openvino 1 in flight, wait for the next frame never", "--domain-id", "38"]) == 0
    start = json.loads(capsys.readouterr().out)["starts"][0]
    for row in start["rounds"]:  # each node measured in its own window, on its own topic
        for measured in row.values():
            assert measured["label_age_ms"] > 0 and measured["labels_per_s"] > 0 and measured["node_cores"] > 0
            assert measured["latency_ms_p50"] <= measured["latency_ms_p90"]
    assert start["nodes"]["defaults"]["configured"].startswith("configured: /fresh0/image_raw")
    assert start["nodes"]["openvino 1 in flight, wait for the next frame never"]["configured"].startswith("configured: /fresh1/image_raw")
    ratios = [r["defaults_age_vs_best_openvino"] for r in start["summary"]["per_round"]]
    assert len(ratios) == 2 and all(r > 0 for r in ratios)
    assert start["summary"]["defaults_age_vs_best_openvino"]["min"] == min(ratios)


def test_the_trial_starts_with_the_engine_s_decision_and_waits_only_where_asked():
    """The node's modes come from the engine's one decision of frames in flight (the plan's
    count first; both counts only with frames_in_flight 0 where the backend overlaps calls), each
    waiting for the next frame and, with wait_for_next_frame auto, not waiting too."""
    from refinenet_ros import Segmenter
    from refinenet_ros.ros.intake.trial import trial_modes
    pytest.importorskip("openvino")
    segmenter = Segmenter(weights=None, num_classes=3, device="cpu", precision="fp32", backend="openvino",
                          streams="auto")
    first = segmenter.plan.streams
    other = 3 - first
    assert trial_modes(0, "auto", segmenter, cores=2) == [IntakeMode(first, True), IntakeMode(first, False),
                                                          IntakeMode(other, True), IntakeMode(other, False)]
    assert trial_modes(0, "never", segmenter, cores=2) == [IntakeMode(first, False), IntakeMode(other, False)]
    assert trial_modes(1, "always", segmenter, cores=2) == [IntakeMode(1, True)]
    assert trial_modes(0, "auto", segmenter, cores=1) == [IntakeMode(first, True), IntakeMode(first, False)]
    torch_segmenter = Segmenter(weights=None, num_classes=3, device="cpu", precision="fp32", backend="torch")
    assert trial_modes(0, "auto", torch_segmenter, cores=2) == [IntakeMode(1, True), IntakeMode(1, False)]
    assert str(IntakeMode(2, False)) == "2, not waiting for the next frame"
