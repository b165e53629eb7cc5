"""Compressed camera input and class metadata (LabelInfo), in-process with real rclpy and Fast
DDS on loopback: a CompressedImage camera gives the same labels as the raw frame, bad
compressed data is skipped and counted without stopping the camera, LabelInfo is latched."""
import sys
import threading

import cv2
import numpy as np
import pytest
import rclpy
import torch
from conftest import wait_until
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import CompressedImage, Image

from refinenet_ros.engine import Segmenter
from refinenet_ros.models import create_model
from refinenet_ros.ros.conversions import ImageConversionError, compressed_to_rgb
from refinenet_ros.ros.node import SegmentationNode

pytestmark = pytest.mark.ros
DOMAIN_ID = 26
CLASS_NAMES = ["road", "car", "tree", "sky"]
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _compressed(rgb, fmt, stamp):
    ok, data = cv2.imencode(".png" if "png" in fmt else ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    msg = CompressedImage(format=fmt, data=data.tobytes())
    msg.header.frame_id = "front_optical"
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp, 42
    return msg


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    path = folder / "tiny.pth"
    torch.save(create_model("mbv2", len(CLASS_NAMES)).state_dict(), path)
    (folder / "names.txt").write_text("\n".join(CLASS_NAMES))
    return path, folder / "names.txt"


def _start(weights, names, extra=()):
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    node = SegmentationNode(context=context, parameter_overrides=[
        Parameter("image_topics", value=["/front/image_raw"]), Parameter("transport", value="compressed"),
        Parameter("weights", value=str(weights)), Parameter("device", value="cpu"),
        Parameter("class_names", value=str(names or "")), Parameter("diagnostics_period", value=0.3), *extra])
    client = rclpy.create_node("inputs_test_client", context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    executor.add_node(client)
    threading.Thread(target=executor.spin, daemon=True).start()
    return context, executor, node, client


def _stop(context, executor, node, client):
    executor.shutdown()
    node.destroy_node()
    client.destroy_node()
    rclpy.shutdown(context=context)


def _collect(client, kind, topic, qos=10):
    received = []
    client.create_subscription(kind, topic, received.append, qos)
    return received


def test_compressed_camera_labels_match_raw_frames_and_bad_data_is_skipped(weights):
    path, names = weights
    rgb = np.random.default_rng(1).integers(0, 255, (40, 56, 3), np.uint8)
    expected = Segmenter(weights=str(path), device="cpu").segment([rgb])[0].labels
    context, executor, node, client = _start(path, names)
    try:
        labels = _collect(client, Image, "/front/segmentation/labels")
        try:  # vision_msgs comes from ../shared/ros2: a user's clone may lack it (then no LabelInfo)
            from vision_msgs.msg import LabelInfo
            infos = _collect(client, LabelInfo, "/front/segmentation/label_info", LATCHED)
        except ImportError:
            infos = None
        diagnostics = _collect(client, DiagnosticArray, "/diagnostics")
        publisher = client.create_publisher(CompressedImage, "/front/image_raw/compressed", qos_profile_sensor_data)
        bad = [CompressedImage(format="jpeg", data=b"\x00not a jpeg"),
               CompressedImage(format="16UC1; compressedDepth png", data=b"\x89PNG"),
               CompressedImage(format="theora", data=b"x" * 10)]

        def bad_frames():
            values = [dict((kv.key, kv.value) for kv in s.values) for d in diagnostics for s in d.status
                      if s.name.endswith("/front/image_raw")]
            return sum(int(v.get("bad_frames", 0)) for v in values)  # each report counts its period

        # One bad frame at a time: a newer frame replaces a pending one (newest-frame rule), and
        # compressed frames are decoded only when they run.
        for message in bad:
            before = bad_frames()
            assert wait_until(lambda: bad_frames() > before, 120, lambda m=message: publisher.publish(m)), \
                f"bad frame {message.format!r} was not counted"
        assert wait_until(lambda: labels, 120,
                     lambda: publisher.publish(_compressed(rgb, "rgb8; png compressed bgr8", stamp=77)))
        first = labels[0]
        assert (first.header.stamp.sec, first.header.stamp.nanosec, first.header.frame_id) == (77, 42, "front_optical")
        got = np.frombuffer(first.data, np.uint8).reshape(first.height, first.width)
        np.testing.assert_array_equal(got, expected)  # png is lossless: same labels as the raw frame
        if infos is not None:
            assert wait_until(lambda: infos, 10), "no LabelInfo"
            assert [(c.class_id, c.class_name) for c in infos[0].class_map] == list(enumerate(CLASS_NAMES))
            assert infos[0].threshold == 0.0
    finally:
        _stop(context, executor, node, client)


@pytest.mark.parametrize("kind,label_map", [("labels_stride4", None), ("lraspp", "nav2")])
def test_a_described_foreign_model_is_published_with_its_label_info(tmp_path, kind, label_map):
    """An ONNX model from elsewhere (sidecar description), optionally through a label map: the
    node publishes the engine's labels, LabelInfo and masks in the output classes; a labels
    model has no confidence topic."""
    import yaml
    import foreign_models
    pytest.importorskip("vision_msgs")
    from vision_msgs.msg import LabelInfo
    path, _ = foreign_models.export(kind, tmp_path)
    extra = [Parameter("mask_groups", value=["hazard: obstacle" if label_map else "hazard: person, car"])]
    if label_map:
        (tmp_path / "map.yaml").write_text(yaml.safe_dump({"classes": [
            {"name": "drivable", "from": ["road"]}, {"name": "obstacle", "from": ["person", "car"]}],
            "unmapped": "other"}))
        extra.append(Parameter("label_map", value=str(tmp_path / "map.yaml")))
    frame = foreign_models.frames()[0]
    engine = Segmenter(weights=str(path), device="cpu", backend="onnxruntime",
                       label_map=str(tmp_path / "map.yaml") if label_map else None)
    expected = engine.segment([frame])[0].labels
    names = ["drivable", "obstacle", "other"] if label_map else foreign_models.CLASSES
    context, executor, node, client = _start(path, None, [Parameter("backend", value="onnxruntime"), *extra])
    try:
        labels = _collect(client, Image, "/front/segmentation/labels")
        masks = _collect(client, Image, "/front/segmentation/mask/hazard")
        infos = _collect(client, LabelInfo, "/front/segmentation/label_info", LATCHED)
        publisher = client.create_publisher(CompressedImage, "/front/image_raw/compressed", qos_profile_sensor_data)
        assert wait_until(lambda: labels and masks, 120,
                          lambda: publisher.publish(_compressed(frame, "rgb8; png compressed bgr8", stamp=5)))
        got = np.frombuffer(labels[0].data, np.uint8).reshape(labels[0].height, labels[0].width)
        np.testing.assert_array_equal(got, expected)
        hazard = engine.class_names.index("obstacle") if label_map else [2, 3]  # person, car
        mask = np.frombuffer(masks[0].data, np.uint8).reshape(got.shape)
        np.testing.assert_array_equal(mask > 0, np.isin(got, hazard))
        assert wait_until(lambda: infos, 10), "no LabelInfo"
        assert [(c.class_id, c.class_name) for c in infos[0].class_map] == list(enumerate(names))
        topics = dict(client.get_topic_names_and_types())
        assert ("/front/segmentation/confidence" in topics) == (kind != "labels_stride4")
    finally:
        _stop(context, executor, node, client)


def test_compressed_decoding_errors_say_why():
    with pytest.raises(ImageConversionError, match="unsupported CompressedImage format"):
        compressed_to_rgb(CompressedImage(format="16UC1; compressedDepth png", data=b"1"))
    with pytest.raises(ImageConversionError, match="empty CompressedImage"):
        compressed_to_rgb(CompressedImage(format="jpeg", data=b""))
    with pytest.raises(ImageConversionError, match="cannot decode 4 bytes as jpeg"):
        compressed_to_rgb(CompressedImage(format="jpeg", data=b"abcd"))
    long_format = "x" * 100_000
    with pytest.raises(ImageConversionError) as error:
        compressed_to_rgb(CompressedImage(format=long_format, data=b"1"))
    assert len(str(error.value)) < 300  # user-controlled text is cut in messages and logs
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 255  # red stays red through png and the BGR round trip
    np.testing.assert_array_equal(compressed_to_rgb(_compressed(rgb, "png", 1)), rgb)


def test_node_runs_without_vision_msgs(weights, monkeypatch):
    path, names = weights
    monkeypatch.setitem(sys.modules, "vision_msgs.msg", None)  # import vision_msgs.msg fails
    context, executor, node, client = _start(path, names, [Parameter("transport", value="raw")])
    try:
        topics = dict(node.get_topic_names_and_types())
        assert "/front/segmentation/labels" in topics and "/front/segmentation/label_info" not in topics
    finally:
        _stop(context, executor, node, client)
