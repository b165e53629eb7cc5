"""Navigation outputs: the semantic point cloud from a registered depth image (projection,
pixel alignment with the labels, NaN for invalid depth, pairing by stamp, stride), class-group
masks, and outputs nobody subscribes to costing nothing. Real rclpy and Fast DDS on loopback
with a real (tiny) model; the geometry is checked against a synthetic plane."""
import threading
import time

import numpy as np
import pytest
import rclpy
import torch
from conftest import wait_until
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from refinenet_ros.ros.projection import depth_in_metres, project, resize_depth
from refinenet_ros.models import create_model
from refinenet_ros.ros.conversions import CLOUD_POINT, numpy_to_image
from refinenet_ros.ros.navigation import mask, parse_mask_groups
from refinenet_ros.ros.node import SegmentationNode, StartupError

pytestmark = pytest.mark.ros
DOMAIN_ID = 28
NAMES = ["road", "car", "tree", "sky"]
FX, FY, CX, CY = 50.0, 60.0, 15.5, 11.5
H, W = 24, 32


def test_projection_of_a_plane_and_invalid_depth():
    depth = np.full((H, W), 2000, np.uint16)  # 16UC1 millimetres: a plane 2 m ahead
    depth[0, 0], depth[1, 1] = 0, 65000       # no return; beyond depth_max_m
    metres = depth_in_metres(depth, "16UC1", 0.1, 20.0)
    points = project(metres, FX, FY, CX, CY)
    np.testing.assert_allclose(points[5, 7], [(7 - CX) * 2 / FX, (5 - CY) * 2 / FY, 2.0], rtol=1e-6)
    assert np.isnan(points[0, 0]).all() and np.isnan(points[1, 1]).all()
    assert np.isfinite(points[2:, 2:]).all()
    sparse = project(metres, FX, FY, CX, CY, stride=4)
    np.testing.assert_array_equal(sparse, points[::4, ::4])
    floats = depth_in_metres(np.full((2, 2), np.nan, np.float32), "32FC1", 0.1, 20.0)
    assert np.isnan(floats).all()
    with pytest.raises(ValueError, match="aspect ratio"):
        resize_depth(np.zeros((24, 32), np.float32), 24, 24)
    with pytest.raises(ValueError, match="no focal length"):
        project(metres, 0.0, 0.0, CX, CY)


def test_masks_and_groups():
    groups = parse_mask_groups(["drivable: road", "obstacle: car, tree", ""], NAMES)
    labels = np.array([[0, 1, 2, 3]], np.uint8)
    np.testing.assert_array_equal(mask(labels, groups["obstacle"]), [[0, 255, 255, 0]])
    np.testing.assert_array_equal(mask(labels, groups["drivable"]) > 0, np.isin(labels, [0]))
    with pytest.raises(ValueError, match="unknown class 'person'; the model's classes are road, car"):
        parse_mask_groups(["obstacle: car, person"], NAMES)
    with pytest.raises(ValueError, match="expected 'name: class"):
        parse_mask_groups(["no colon"], NAMES)


@pytest.fixture(scope="module")
def ros(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nav")
    torch.manual_seed(0)
    torch.save(create_model("mbv2", len(NAMES)).state_dict(), folder / "tiny.pth")
    (folder / "names.txt").write_text("\n".join(NAMES))
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    node = SegmentationNode(context=context, parameter_overrides=[
        Parameter("image_topics", value=["/rgbd/image_raw", "/plain/image_raw"]),
        Parameter("depth_topics", value=["/rgbd/depth/image_raw", ""]),
        Parameter("mask_groups", value=["drivable: road, sky", "obstacle: car, tree"]),
        Parameter("weights", value=str(folder / "tiny.pth")), Parameter("class_names", value=str(folder / "names.txt")),
        Parameter("device", value="cpu"), Parameter("backend", value="torch")])
    client = rclpy.create_node("nav_client", context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    executor.add_node(client)
    threading.Thread(target=executor.spin, daemon=True).start()
    yield node, client
    executor.shutdown()
    node.destroy_node()
    client.destroy_node()
    rclpy.shutdown(context=context)


def _listen(client, kind, topic):
    got = []
    client.create_subscription(kind, topic, got.append, 50)
    return got


def _send(client, publishers, stamp, depth_stamp):
    color = numpy_to_image(np.random.default_rng(stamp).integers(0, 255, (H, W, 3), np.uint8), "rgb8")
    color.header.frame_id, color.header.stamp.sec = "rgbd_optical", stamp
    depth = np.full((H, W), 2.0, np.float32)
    depth[0, :] = np.nan  # invalid first row
    depth_msg = numpy_to_image(depth, "32FC1")
    depth_msg.header.frame_id, depth_msg.header.stamp.sec = "rgbd_optical", depth_stamp
    info = CameraInfo(width=W, height=H, k=[FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0])
    info.header = color.header
    publishers["info"].publish(info)
    publishers["depth"].publish(depth_msg)
    time.sleep(0.05)  # the depth frame is in the buffer before its colour frame is segmented
    publishers["image"].publish(color)


def test_semantic_cloud_is_pixel_aligned_and_stamped_like_the_image(ros):
    node, client = ros
    labels = _listen(client, Image, "/rgbd/segmentation/labels")
    clouds = _listen(client, PointCloud2, "/rgbd/segmentation/points")
    obstacle = _listen(client, Image, "/rgbd/segmentation/mask/obstacle")
    publishers = {"image": client.create_publisher(Image, "/rgbd/image_raw", qos_profile_sensor_data),
                  "depth": client.create_publisher(Image, "/rgbd/depth/image_raw", qos_profile_sensor_data),
                  "info": client.create_publisher(CameraInfo, "/rgbd/camera_info", qos_profile_sensor_data)}
    stamps = iter(range(100, 10_000))
    assert wait_until(lambda: clouds and labels and obstacle, 120,
                 lambda: _send(client, publishers, s := next(stamps), s)), "no cloud"
    cloud = clouds[0]
    label_msg = next(m for m in labels if m.header.stamp.sec == cloud.header.stamp.sec)
    mask_msg = next(m for m in obstacle if m.header.stamp.sec == cloud.header.stamp.sec)
    assert (cloud.height, cloud.width) == (label_msg.height, label_msg.width) == (H, W)
    assert cloud.header == label_msg.header
    points = np.frombuffer(cloud.data, CLOUD_POINT).reshape(H, W)
    label_image = np.frombuffer(label_msg.data, np.uint8).reshape(H, W)
    np.testing.assert_allclose([points["x"][5, 7], points["y"][5, 7], points["z"][5, 7]],
                               [(7 - CX) * 2 / FX, (5 - CY) * 2 / FY, 2.0], rtol=1e-5)
    assert np.isnan(points["z"][0]).all() and np.isfinite(points["z"][1:]).all()
    np.testing.assert_array_equal(points["label"], label_image)
    rgb = points["rgb"].view(np.uint32)
    palette = node.segmenter.palette
    expected = (palette[label_image, 0].astype(np.uint32) << 16) | (palette[label_image, 1].astype(np.uint32) << 8) \
        | palette[label_image, 2]
    np.testing.assert_array_equal(rgb, expected)
    assert ((points["confidence"] > 0) & (points["confidence"] <= 1)).all()
    np.testing.assert_array_equal(np.frombuffer(mask_msg.data, np.uint8).reshape(H, W) > 0,
                                  np.isin(label_image, [1, 2]))

    # A depth frame with another stamp is not paired (tolerance 0): labels, but no cloud. The
    # offset is beyond every stamp sent, so no buffered depth frame can match a later colour one.
    # Outputs of a paired frame still in flight may arrive meanwhile: only later stamps count.
    unpaired_from = next(stamps)
    assert wait_until(lambda: sum(m.header.stamp.sec >= unpaired_from for m in labels) >= 2, 60,
                      lambda: _send(client, publishers, s := next(stamps), s + 1_000_000))
    assert not [c for c in clouds if c.header.stamp.sec >= unpaired_from]
    clouds.clear()

    # Stride 4: every 4th pixel of every 4th row, valid points only, one row.
    node.set_parameters([Parameter("cloud_stride", value=4)])
    assert wait_until(lambda: clouds, 60, lambda: _send(client, publishers, s := next(stamps), s))
    assert clouds[0].height == 1 and clouds[0].width == (H // 4 - 1) * (W // 4)  # row 0 is invalid


def test_outputs_without_subscribers_cost_nothing(ros):
    node, _ = ros
    plain, rgbd = node.cameras[1], node.cameras[0]
    assert "points" not in plain.publishers  # no depth topic: no cloud at all
    # nobody subscribes to these: they are neither computed nor published
    assert "mask/drivable" not in plain.wanted_outputs(node._settings)
    assert "mask/drivable" not in rgbd.wanted_outputs(node._settings)


def test_unknown_class_in_mask_groups_stops_the_node(ros, tmp_path):
    node, _ = ros
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    try:
        with pytest.raises(StartupError, match="unknown class 'person'"):
            SegmentationNode(context=context, parameter_overrides=[
                Parameter("image_topics", value=["/x/image_raw"]), Parameter("mask_groups", value=["o: person"]),
                Parameter("weights", value=node._values["weights"]),
                Parameter("class_names", value=node._values["class_names"]), Parameter("device", value="cpu"),
                Parameter("backend", value="torch")])
    finally:
        rclpy.shutdown(context=context)
