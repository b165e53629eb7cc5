"""One camera of the segmentation node: its subscriptions (raw or compressed image, camera_info),
its output publishers, and the publishing of one result with the input's exact header."""
import copy

import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from .conversions import numpy_to_image, scale_camera_info
from .params import sibling_topic

OUTPUTS = ("labels", "color", "overlay", "confidence")
# Outputs are reliable so both reliable (RViz) and best-effort subscribers can connect.
OUTPUT_QOS = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)


class Camera:
    """One input topic: its subscriptions, output publishers and latest camera_info."""

    def __init__(self, node, index, topic, qos, transport):
        self.index, self.topic = index, topic
        self.info = None
        self.publishers = {name: node.create_publisher(Image, sibling_topic(topic, f"segmentation/{name}"),
                                                       OUTPUT_QOS) for name in OUTPUTS}
        self.info_publisher = node.create_publisher(
            CameraInfo, sibling_topic(topic, "segmentation/camera_info"), OUTPUT_QOS)
        if transport == "compressed":
            node.create_subscription(CompressedImage, f"{topic.rstrip('/')}/compressed",
                                     lambda msg: node.on_image(self, msg), qos)
        else:
            node.create_subscription(Image, topic, lambda msg: node.on_image(self, msg), qos)
        node.create_subscription(CameraInfo, sibling_topic(topic, "camera_info"), self.on_info, qos)

    def on_info(self, msg):
        self.info = msg

    def wanted_outputs(self, settings):
        """The outputs that are enabled and have subscribers."""
        enabled = {"labels": True, "color": settings.publish_color,
                   "overlay": settings.publish_overlay, "confidence": settings.publish_confidence}
        return {name for name in OUTPUTS
                if enabled[name] and self.publishers[name].get_subscription_count() > 0}

    def publish(self, message, result, outputs):
        """Publish the wanted outputs of ``result`` with the input ``message``'s header: every
        message is built first, so a frame that fails is not published at all."""
        header = message.header
        height, width = result.labels.shape
        ready = []
        if "labels" in outputs:
            encoding = "mono8" if result.labels.dtype == np.uint8 else "mono16"
            ready.append((self.publishers["labels"], numpy_to_image(result.labels, encoding, header)))
        if "color" in outputs:
            ready.append((self.publishers["color"], numpy_to_image(result.color, "rgb8", header)))
        if "overlay" in outputs:
            ready.append((self.publishers["overlay"], numpy_to_image(result.overlay, "rgb8", header)))
        if "confidence" in outputs:
            ready.append((self.publishers["confidence"],
                          numpy_to_image(result.confidence_mono8(), "mono8", header)))
        info = self.info
        if info is not None and self.info_publisher.get_subscription_count() > 0:
            if (height, width) == (message.height, message.width):
                info = copy.copy(info)
                info.header = header
            else:
                info = scale_camera_info(info, width, height, header)
            ready.append((self.info_publisher, info))
        for publisher, msg in ready:
            publisher.publish(msg)
