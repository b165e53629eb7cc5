"""Reliability of the node as a field robot tries it: fair service under overload, one camera's
failure staying that camera's, bounded frame sizes and memory, clean start-up errors and
signals, throttled and shortened logs, a warning for a second node of the same name, and
non-finite weights refused. Real rclpy and Fast DDS on loopback, real processes where the
point is a process's behaviour."""
import signal
import threading
import time

import numpy as np
import pytest
import rclpy
import torch
from conftest import wait_until
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from test_node_process import DOMAIN_ID as PROCESS_DOMAIN_ID
from test_node_process import NodeProcess

from refinenet_ros.models import CheckpointError, create_model, load_checkpoint
from refinenet_ros.ros.conversions import numpy_to_image
from refinenet_ros.ros.node import SegmentationNode

pytestmark = pytest.mark.ros
DOMAIN_ID = 27


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save(create_model("mbv2", 3).state_dict(), path)
    return path


class InProcess:
    """A SegmentationNode and a client node on one private context, spun in the background."""

    def __init__(self, weights, cameras, **parameters):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=DOMAIN_ID)
        overrides = [Parameter("image_topics", value=[f"/{c}/image_raw" for c in cameras]),
                     Parameter("weights", value=str(weights)), Parameter("device", value="cpu"),
                     Parameter("diagnostics_period", value=0.3)]
        overrides += [Parameter(name, value=value) for name, value in parameters.items()]
        self.node = SegmentationNode(context=self.context, parameter_overrides=overrides)
        self.client = rclpy.create_node("reliability_client", context=self.context)
        self.labels = {c: [] for c in cameras}
        for camera in cameras:
            self.client.create_subscription(Image, f"/{camera}/segmentation/labels",
                                            self.labels[camera].append, 50)
        self.diagnostics = []
        self.client.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 50)
        self.images = {c: self.client.create_publisher(Image, f"/{c}/image_raw", qos_profile_sensor_data)
                       for c in cameras}
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.client)
        self.spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self.spinner.start()

    def publish(self, camera, height=24, width=32, stamp=0):
        message = numpy_to_image(np.full((height, width, 3), 90, np.uint8), "rgb8")
        message.header.frame_id, message.header.stamp.sec = camera, stamp
        self.images[camera].publish(message)

    def bad_frames(self, camera):
        return max([int(kv.value) for d in self.diagnostics for s in d.status if s.name.endswith(f"/{camera}/image_raw")
                    for kv in s.values if kv.key == "bad_frames"] or [0])

    def close(self):
        self.executor.shutdown()
        self.spinner.join(10.0)  # spin() returns before the context goes
        self.node.destroy_node()
        self.client.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.mark.slow
def test_overload_gives_every_camera_its_share(weights):
    cameras = [f"cam{i}" for i in range(5)]
    ros = InProcess(weights, cameras, max_batch_size=4, batch_timeout_ms=0.0, backend="torch")
    try:
        assert wait_until(lambda: all(ros.labels.values()), 120, lambda: [ros.publish(c) for c in cameras])
        for labels in ros.labels.values():
            labels.clear()
        # every camera in the same order, a round of five frames for each frame served (so
        # always overloaded, without flooding the GIL with callbacks), until ~10 frames each
        # came back: a count, not a time, so a slower or busier CPU only takes longer
        deadline = time.monotonic() + 600.0
        served = lambda: sum(map(len, ros.labels.values()))  # noqa: E731
        while served() < 10 * len(cameras) and time.monotonic() < deadline:
            before = served()
            for camera in cameras:
                ros.publish(camera)
            wait_until(lambda: served() > before, 0.5, period=0.002)
        time.sleep(1.0)
        delivered = [len(ros.labels[c]) for c in cameras]
        mean = sum(delivered) / len(delivered)
        assert mean >= 10 and min(delivered) >= 0.8 * mean and max(delivered) <= 1.2 * mean, delivered
        engine = [{kv.key: kv.value for kv in s.values} for d in ros.diagnostics for s in d.status
                  if s.name.endswith(": inference")]
        running = [values for values in engine if float(values["batches_per_s"]) > 0]
        assert running and all(float(v["mean_batch_size"]) == 1.0 for v in running)  # CPU: one frame per call
        # stage times: a 0.3 s period may hold a batch whose publishing (another thread) falls in the next
        models = [float(v["stage_ms_model_p50"]) for v in running if "stage_ms_model_p50" in v]
        assert models and min(models) > 0 and any("stage_ms_publish_p50" in v for v in engine)
    finally:
        ros.close()


def test_frames_in_flight_go_out_in_the_order_they_came(weights):
    """Two frames segmented at once (OpenVINO streams): a small frame taken after a big one
    finishes first, yet the camera's outputs keep the order of its frames."""
    pytest.importorskip("openvino")
    ros = InProcess(weights, ["cam"], backend="openvino", precision="fp32", frames_in_flight=2)
    try:
        assert ros.node.segmenter.streams == 2
        stamp = 0

        def big_then_small():
            nonlocal stamp
            for height, width in ((360, 480), (24, 32)):
                stamp += 1
                ros.publish("cam", height, width, stamp=stamp)
                time.sleep(0.015)  # long enough for a free inference thread to take it

        assert wait_until(lambda: len(ros.labels["cam"]) >= 30, 120, big_then_small, period=0.0)
        stamps = [m.header.stamp.sec for m in ros.labels["cam"]]
        assert stamps == sorted(set(stamps)), stamps
        assert {m.height for m in ros.labels["cam"]} == {360, 24}
    finally:
        ros.close()


def test_one_cameras_failure_is_its_own(weights):
    """A camera_info that cannot be scaled (0x0, outputs at the network size) breaks that
    camera's frames: they are counted and never published; the other camera is unaffected."""
    ros = InProcess(weights, ["good", "bad"], max_batch_size=2, batch_timeout_ms=50.0,
                    output_resolution="network", input_width=32, input_height=24, backend="torch")
    try:
        info = ros.client.create_publisher(CameraInfo, "/bad/camera_info", 10)
        ros.client.create_subscription(CameraInfo, "/bad/segmentation/camera_info", lambda m: None, 10)
        bad = next(camera for camera in ros.node.cameras if camera.topic == "/bad/image_raw")
        # camera_info and images are separate topics, matched separately: a frame that arrives
        # before the node holds any camera_info is rightly published, so none is sent before.
        assert wait_until(lambda: bad.info is not None, 60,
                          lambda: info.publish(CameraInfo(width=0, height=0)))
        sent = 0

        def publish_both():
            nonlocal sent
            ros.publish("good", 48, 64, stamp=sent)
            ros.publish("bad", 48, 64, stamp=sent)
            sent += 1

        assert wait_until(lambda: len(ros.labels["good"]) >= 5 and ros.bad_frames("bad") > 0, 120, publish_both)
        assert ros.labels["bad"] == []  # skipped frames are never published, not even in part
        assert ros.bad_frames("good") == 0
    finally:
        ros.close()


def test_frames_over_max_input_pixels_run_downscaled(weights):
    ros = InProcess(weights, ["big"], max_input_pixels=4096, backend="torch")
    try:
        assert wait_until(lambda: ros.labels["big"], 120, lambda: ros.publish("big", 240, 320))
        assert (ros.labels["big"][0].height, ros.labels["big"][0].width) == (240, 320)  # outputs at input size
        refused = ros.node.set_parameters_atomically([Parameter("input_width", value=640),
                                                      Parameter("input_height", value=480)])
        assert not refused.successful and "exceeds max_input_pixels" in refused.reason
    finally:
        ros.close()


def test_second_node_with_the_same_name_is_reported(weights):
    first = InProcess(weights, ["dup_a"], backend="torch")
    second = InProcess(weights, ["dup_b"], backend="torch")
    try:
        assert wait_until(lambda: first.node._name_clash_warned and second.node._name_clash_warned, 60)
    finally:
        first.close()
        second.close()


def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path):
    state = create_model("mbv2", 3).state_dict()
    state["classifier.weight"][0, 0, 0, 0] = float("nan")
    path = tmp_path / "nan.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"non-finite .*classifier\.weight"):
        load_checkpoint(create_model("mbv2", 3), path)


def test_invalid_topic_name_is_one_fatal_line(tmp_path, weights):
    code, output = NodeProcess(tmp_path, image_topics=["/front cam/image_raw"], weights=str(weights),
                               device="cpu").wait_exit()
    assert code == 1 and "Traceback" not in output, output
    fatal = [line for line in output.splitlines() if "FATAL" in line]
    assert len(fatal) == 1 and "is not a valid topic name" in fatal[0], output


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_start_up_exits_0(tmp_path, weights, signum):
    node = NodeProcess(tmp_path, weights=str(weights), device="cpu")
    time.sleep(1.0)  # importing torch, loading the model
    assert node.process.poll() is None, node.output
    code, output = node.stop(signum)
    assert code == 0 and "Traceback" not in output, output


@pytest.mark.slow
def test_bad_frames_are_logged_per_camera_and_kind_and_cut_short(tmp_path, weights):
    node = NodeProcess(tmp_path, image_topics=["/noisy/image_raw"], weights=str(weights), device="cpu")
    node.wait_ready()
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=PROCESS_DOMAIN_ID)
    try:
        client = rclpy.create_node("noisy_client", context=context)
        client.create_subscription(Image, "/noisy/segmentation/labels", lambda m: None, 10)
        publisher = client.create_publisher(Image, "/noisy/image_raw", qos_profile_sensor_data)
        rng = np.random.default_rng(0)
        deadline = time.monotonic() + 6.0
        while time.monotonic() < deadline:
            message = numpy_to_image(np.zeros((8, 8, 3), np.uint8), "rgb8")
            message.encoding = "x" * int(rng.integers(10, 100_000))  # a new bad encoding each time
            publisher.publish(message)
            time.sleep(0.03)
        client.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    code, output = node.stop(signal.SIGINT)
    logged = [line for line in output.splitlines() if "skipping frame" in line]
    assert code == 0 and 1 <= len(logged) <= 2, output[-3000:]  # 6 s, one line per 5 s per kind
    assert max(len(line) for line in logged) < 600
