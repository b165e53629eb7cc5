"""The segmentation node in-process: real rclpy and Fast DDS on loopback (own domain, own
context), a tiny random-init model on the CPU, frames published by a second node."""
import threading
import time

import numpy as np
import pytest
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from refinenet_ros.models import create_model
from refinenet_ros.ros.conversions import image_to_numpy, numpy_to_image
from refinenet_ros.ros.node import SegmentationNode

pytestmark = pytest.mark.ros
DOMAIN_ID = 24
NUM_CLASSES = 5
PALETTE = [[10, 20, 30], [200, 0, 0], [0, 200, 0], [0, 0, 200], [255, 255, 255]]
CLASS_NAMES = ["road", "car", "tree", "sky", "person"]
CAMERAS = ("/cam_a", "/cam_b", "/cam_c")  # nothing ever subscribes to cam_c's outputs
RNG = np.random.default_rng(0)


class Client:
    """Publishes frames and records what the node publishes."""

    def __init__(self, context):
        self.node = rclpy.create_node("node_test_client", context=context)
        self.received = {}  # topic -> list of messages
        self.lock = threading.Lock()
        self.image_publishers = {ns: self.node.create_publisher(Image, f"{ns}/image_raw", qos_profile_sensor_data)
                                 for ns in CAMERAS}
        self.info_publishers = {ns: self.node.create_publisher(CameraInfo, f"{ns}/camera_info", 10)
                                for ns in CAMERAS}
        self.sequence = 0

    def listen(self, topic, kind=Image):
        self.received.setdefault(topic, [])
        self.node.create_subscription(kind, topic, lambda msg: self._store(topic, msg), 10)

    def _store(self, topic, msg):
        with self.lock:
            self.received[topic].append(msg)

    def messages(self, topic):
        with self.lock:
            return list(self.received[topic])

    def publish(self, namespace, pixels, encoding="rgb8"):
        self.sequence += 1
        msg = numpy_to_image(pixels, encoding)
        msg.header.frame_id = f"{namespace[1:]}_optical"
        msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + self.sequence, self.sequence
        self.image_publishers[namespace].publish(msg)
        return msg

    def wait_for(self, topic, predicate, timeout=30.0, republish=None):
        """The first message on ``topic`` matching ``predicate``, re-running ``republish``
        every 0.5 s (frames sent before discovery completes are lost)."""
        deadline = time.monotonic() + timeout
        next_publish = 0.0
        while time.monotonic() < deadline:
            for msg in self.messages(topic):
                if predicate(msg):
                    return msg
            if republish is not None and time.monotonic() >= next_publish:
                republish()
                next_publish = time.monotonic() + 0.5
            time.sleep(0.02)
        raise AssertionError(f"nothing matching on {topic} within {timeout} s")


@pytest.fixture(scope="module")
def ros(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    weights = folder / "tiny.pth"
    torch.save(create_model("mbv2", NUM_CLASSES).state_dict(), weights)
    (folder / "palette.yaml").write_text(str(PALETTE))
    (folder / "names.txt").write_text("\n".join(CLASS_NAMES))
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    node = SegmentationNode(context=context, parameter_overrides=[
        Parameter("image_topics", value=[f"{ns}/image_raw" for ns in CAMERAS]),
        Parameter("weights", value=str(weights)), Parameter("device", value="cpu"),
        Parameter("precision", value="fp32"), Parameter("max_batch_size", value=2),
        Parameter("batch_timeout_ms", value=20.0), Parameter("diagnostics_period", value=0.5),
        Parameter("palette", value=str(folder / "palette.yaml")),
        Parameter("class_names", value=str(folder / "names.txt"))])
    client = Client(context)
    for ns in CAMERAS[:2]:
        for output in ("labels", "color", "overlay", "confidence"):
            client.listen(f"{ns}/segmentation/{output}")
    client.listen("/cam_a/segmentation/camera_info", CameraInfo)
    client.listen("/diagnostics", DiagnosticArray)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    executor.add_node(client.node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield node, client
    executor.shutdown()
    node.destroy_node()
    client.node.destroy_node()
    rclpy.shutdown(context=context)
    thread.join(timeout=5)


def same_header(a, b):
    return a.header.frame_id == b.header.frame_id and a.header.stamp == b.header.stamp


def test_two_cameras_get_labels_color_overlay_with_the_input_header(ros):
    node, client = ros
    frames = {"/cam_a": (RNG.integers(0, 256, (64, 80, 3), dtype=np.uint8), "bgr8"),
              "/cam_b": (RNG.integers(0, 256, (48, 64), dtype=np.uint8), "mono8")}
    for ns, (pixels, encoding) in frames.items():
        sent = []
        client.wait_for(f"{ns}/segmentation/labels", lambda m: any(same_header(m, s) for s in sent),
                        republish=lambda: sent.append(client.publish(ns, pixels, encoding)))
        labels = [m for m in client.messages(f"{ns}/segmentation/labels") if any(same_header(m, s) for s in sent)][0]
        source = next(s for s in sent if same_header(labels, s))
        height, width = pixels.shape[:2]
        assert (labels.height, labels.width, labels.encoding) == (height, width, "mono8")
        assert labels.header.frame_id == f"{ns[1:]}_optical"
        assert image_to_numpy(labels).max() < NUM_CLASSES
        for output in ("color", "overlay"):
            msg = client.wait_for(f"{ns}/segmentation/{output}", lambda m: same_header(m, source))
            assert (msg.height, msg.width, msg.encoding) == (height, width, "rgb8")
        color = client.wait_for(f"{ns}/segmentation/color", lambda m: same_header(m, source))
        palette = np.array(PALETTE, np.uint8)  # from the palette file parameter
        np.testing.assert_array_equal(image_to_numpy(color), palette[image_to_numpy(labels)])
    assert node.segmenter.class_names == CLASS_NAMES
    assert client.messages("/cam_a/segmentation/confidence") == []  # publish_confidence is off


def test_overlay_alpha_changes_at_runtime(ros):
    node, client = ros
    pixels = RNG.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    for alpha, expected in ((0.0, lambda color: pixels), (1.0, lambda color: color)):
        assert node.set_parameters([Parameter("overlay_alpha", value=alpha)])[0].successful
        sent = []
        overlay = client.wait_for("/cam_a/segmentation/overlay", lambda m: any(same_header(m, s) for s in sent),
                                  republish=lambda: sent.append(client.publish("/cam_a", pixels)))
        color = client.wait_for("/cam_a/segmentation/color", lambda m: same_header(m, overlay))
        np.testing.assert_array_equal(image_to_numpy(overlay), expected(image_to_numpy(color)))
    node.set_parameters([Parameter("overlay_alpha", value=0.5)])


def test_network_resolution_confidence_and_scaled_camera_info(ros):
    node, client = ros
    info = CameraInfo(width=80, height=64, k=[50.0, 0, 40.0, 0, 50.0, 32.0, 0, 0, 1.0],
                      p=[50.0, 0, 40.0, 0, 0, 50.0, 32.0, 0, 0, 0, 1.0, 0])
    results = node.set_parameters([Parameter("input_width", value=40), Parameter("input_height", value=32),
                                   Parameter("output_resolution", value="network"),
                                   Parameter("publish_confidence", value=True)])
    assert all(r.successful for r in results)
    try:
        pixels = RNG.integers(0, 256, (64, 80, 3), dtype=np.uint8)
        sent = []

        def republish():
            client.info_publishers["/cam_a"].publish(info)
            sent.append(client.publish("/cam_a", pixels))
        scaled = client.wait_for("/cam_a/segmentation/camera_info",
                                 lambda m: any(same_header(m, s) for s in sent), republish=republish)
        assert (scaled.width, scaled.height) == (40, 32)
        assert scaled.k[0] == pytest.approx(25.0) and scaled.k[2] == pytest.approx((40.0 + 0.5) / 2 - 0.5)
        for output, encoding in (("labels", "mono8"), ("overlay", "rgb8"), ("confidence", "mono8")):
            msg = client.wait_for(f"/cam_a/segmentation/{output}", lambda m: same_header(m, scaled))
            assert (msg.width, msg.height, msg.encoding) == (40, 32, encoding)
        confidence = image_to_numpy(client.wait_for("/cam_a/segmentation/confidence",
                                                    lambda m: same_header(m, scaled)))
        assert confidence.min() >= 255 // NUM_CLASSES  # the top class has at least 1 / K probability
    finally:
        node.set_parameters([Parameter("input_width", value=0), Parameter("input_height", value=0),
                             Parameter("output_resolution", value="input"),
                             Parameter("publish_confidence", value=False)])


@pytest.mark.parametrize("name,value,reason", [
    ("output_resolution", "half", "output_resolution must be one of"),
    ("max_batch_size", 0, "out of range"),
    ("overlay_alpha", 1.5, "out of range"),
    ("batch_timeout_ms", "fast", "type"),
    ("arch", "rf_lw50", "read-only"),
    ("weights", "/nonexistent.pth", "read-only"),
])
def test_invalid_parameter_is_rejected_and_old_value_kept(ros, name, value, reason):
    node, _ = ros
    before = node.get_parameter(name).value
    try:
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert not result.successful and reason in result.reason
    except Exception as exc:  # rclpy raises for read-only and wrongly typed parameters
        assert reason in str(exc)
    assert node.get_parameter(name).value == before


def bad_images():
    good = dict(height=6, width=5, encoding="rgb8", step=15, data=bytes(90))
    changes = [dict(encoding="yuv422"), dict(height=0, width=0, step=0, data=b""), dict(step=10),
               dict(data=bytes(50)), dict(data=bytes(200)), dict(encoding="mono16", step=5)]
    for change in changes:
        msg = Image(**{**good, **change})
        yield msg


def test_bad_frames_are_skipped_and_reported_and_the_node_keeps_serving(ros):
    node, client = ros
    for _ in range(3):  # sent a few times: best-effort delivery
        for msg in bad_images():
            client.image_publishers["/cam_a"].publish(msg)
        time.sleep(0.2)
    warning = lambda array: any(s.level == DiagnosticStatus.WARN and "/cam_a/image_raw" in s.name
                                and "bad frame" in s.message for s in array.status)
    client.wait_for("/diagnostics", warning)
    pixels = RNG.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    for ns in CAMERAS[:2]:
        sent = []
        client.wait_for(f"{ns}/segmentation/labels", lambda m: any(same_header(m, s) for s in sent),
                        republish=lambda: sent.append(client.publish(ns, pixels)))


def test_flood_drops_old_frames_never_queues_and_ends_on_the_newest(ros):
    node, client = ros
    pixels = RNG.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    client.wait_for("/cam_b/segmentation/labels", lambda m: True,
                    republish=lambda: client.publish("/cam_b", pixels))  # connected
    dropped_before = node._intake.dropped()["replaced"][1]
    processed_before = node.processed_frames[1]
    flood = [client.publish("/cam_b", pixels) for _ in range(300)]
    client.wait_for("/cam_b/segmentation/labels", lambda m: same_header(m, flood[-1]), timeout=30)
    processed = node.processed_frames[1] - processed_before
    assert node._intake.dropped()["replaced"][1] > dropped_before  # frames were replaced, not queued
    assert 1 <= processed < len(flood)
    time.sleep(0.5)
    assert node.processed_frames[1] - processed_before == processed  # nothing left queued


def test_cameras_without_subscribers_are_not_even_subscribed(ros):
    """image_pipeline's rule: an unwatched camera's image, camera_info (and depth) topics have no
    subscription from the node, so its frames do not cross DDS at all."""
    node, client = ros
    pixels = RNG.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    assert client.node.count_subscribers("/cam_c/image_raw") == 0
    assert client.node.count_subscribers("/cam_c/camera_info") == 0
    assert client.node.count_subscribers("/cam_a/image_raw") == 1  # watched: subscribed
    for _ in range(10):
        client.publish("/cam_c", pixels)
        time.sleep(0.05)
    diagnostics = client.wait_for("/diagnostics", lambda a: any(
        "/cam_c/image_raw" in s.name and float(dict((v.key, v.value) for v in s.values)["input_fps"]) == 0
        for s in a.status))
    assert node.processed_frames[2] == 0
    assert any(s.name.endswith(": inference") and {v.key for v in s.values} >= {"device", "precision", "backend", "state"}
               for s in diagnostics.status)


def one_camera_labels(tmp_path, domain_id, check=None, weights=None, **overrides):
    """A fresh node with ``overrides`` on one camera: the node and one labels message.
    ``check(node)`` runs while the node is up, after that message arrived."""
    if weights is None:
        weights = tmp_path / "tiny.pth"
        torch.save(create_model("mbv2", NUM_CLASSES).state_dict(), weights)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = SegmentationNode(context=context, parameter_overrides=[
        Parameter("image_topics", value=["/one/image_raw"]), Parameter("weights", value=str(weights)),
        *(Parameter(name, value=value) for name, value in overrides.items())])
    client = Client(context)
    client.image_publishers["/one"] = client.node.create_publisher(Image, "/one/image_raw", qos_profile_sensor_data)
    client.listen("/one/segmentation/labels")
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    executor.add_node(client.node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        pixels = RNG.integers(0, 256, (64, 80, 3), dtype=np.uint8)
        sent = []
        labels = client.wait_for("/one/segmentation/labels", lambda m: any(same_header(m, s) for s in sent),
                                 republish=lambda: sent.append(client.publish("/one", pixels)))
        if check is not None:
            check(node)
        return node, labels
    finally:
        executor.shutdown()
        node.destroy_node()
        client.node.destroy_node()
        rclpy.shutdown(context=context)
        thread.join(timeout=5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_node_on_cuda_publishes_valid_labels(tmp_path):
    node, labels = one_camera_labels(tmp_path, DOMAIN_ID + 10, device="cuda", precision="auto")
    assert node.segmenter.device.type == "cuda"
    assert (labels.height, labels.width) == (64, 80) and image_to_numpy(labels).max() < NUM_CLASSES


def test_node_with_the_onnxruntime_backend_publishes_valid_labels(tmp_path):
    pytest.importorskip("onnxruntime")
    node, labels = one_camera_labels(tmp_path, DOMAIN_ID + 11, device="cpu", backend="onnxruntime")
    assert node.segmenter.backend == "onnxruntime"
    assert (labels.height, labels.width) == (64, 80) and image_to_numpy(labels).max() < NUM_CLASSES


def test_node_runs_the_shipped_int8_model(tmp_path):
    pytest.importorskip("onnxruntime")
    node, labels = one_camera_labels(tmp_path, DOMAIN_ID + 12, weights="default", precision="int8")
    assert (node.segmenter.backend, node.segmenter.precision) == ("onnxruntime", "int8")
    assert (labels.height, labels.width) == (64, 80) and image_to_numpy(labels).max() < 11


def test_a_static_onnx_model_keeps_its_input_size(tmp_path):
    """Frames of any size run through a static export (resized to it); other sizes are refused."""
    pytest.importorskip("onnxruntime")
    from refinenet_ros.engine.backends.export import ExportWrapper, export_onnx
    from refinenet_ros.models import fuse_for_inference
    model = fuse_for_inference(create_model("mbv2", NUM_CLASSES).eval())
    path = tmp_path / "static.onnx"
    export_onnx(ExportWrapper(model), path, {"arch": "mbv2", "num_classes": NUM_CLASSES, "output_stride": 4},
                batch=1, height=64, width=96)

    def check(node):
        assert node.segmenter.fixed_input_size == (64, 96)
        refused = node.set_parameters_atomically([Parameter("input_width", value=40),
                                                  Parameter("input_height", value=32)])
        assert not refused.successful and "only takes 96x64 input" in refused.reason
        same = node.set_parameters_atomically([Parameter("input_width", value=96),
                                               Parameter("input_height", value=64)])
        assert same.successful

    node, labels = one_camera_labels(tmp_path, DOMAIN_ID + 13, check=check, weights=path, device="cpu")
    assert (labels.height, labels.width) == (64, 80)  # outputs at the frame's size


def test_the_temporal_filter_switches_at_run_time_and_survives_a_camera_restart(ros):
    """Filtered labels, colours and confidence go out with the input's exact header; the filter
    is switched on and off by its parameter, and a camera whose stamps go back (a restart, a bag
    replayed) starts its state afresh instead of stalling."""
    node, client = ros
    pixels = RNG.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    switched = node.set_parameters([Parameter("temporal_filter", value=True), Parameter("publish_confidence", value=True)])
    assert all(result.successful for result in switched)

    def send(sec, nanosec):
        msg = numpy_to_image(pixels, "rgb8")
        msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec = "cam_a_optical", sec, nanosec
        client.image_publishers["/cam_a"].publish(msg)
        return msg
    for stamps in ([(5000, k * 33_000_000) for k in range(1, 6)], [(10, k * 33_000_000) for k in range(1, 4)]):
        sent = []
        for output in ("labels", "color", "confidence"):
            client.wait_for(f"/cam_a/segmentation/{output}",
                            lambda m: any(same_header(m, s) for s in sent) and m.header.stamp.sec == stamps[0][0],
                            republish=lambda: sent.append(send(*stamps[len(sent) % len(stamps)])))
    assert node.segmenter.temporal_filter
    assert node.set_parameters([Parameter("temporal_filter", value=False),
                                Parameter("publish_confidence", value=False)])[0].successful
    sent = []
    client.wait_for("/cam_a/segmentation/labels", lambda m: any(same_header(m, s) for s in sent),
                    republish=lambda: sent.append(send(20, len(sent) * 1000)))
    assert not node.segmenter.temporal_filter
