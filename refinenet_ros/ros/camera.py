"""One camera of the segmentation node: its subscriptions (raw or compressed image, camera_info,
optional registered depth), its output publishers, and the publishing of one result with the
input's exact header."""
import copy
from dataclasses import dataclass

from rclpy.event_handler import PublisherEventCallbacks
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from .conversions import ImageConversionError, numpy_to_image, scale_camera_info
from .navigation import DepthPairing, cloud, mask
from .outputs import OUTPUTS, is_enabled
from .params import sibling_topic


def output_qos(name):
    """Reliable (both reliable and best-effort subscribers connect) or best effort."""
    reliability = ReliabilityPolicy.RELIABLE if name == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(depth=2, reliability=reliability)


@dataclass(frozen=True)
class CameraConfig:
    transport: str = "raw"
    output_qos: str = "reliable"
    depth_topic: str = ""          # registered depth image topic ('' = no point cloud)
    depth_tolerance_ms: float = 0.0
    mask_groups: dict = None       # group name -> class ids
    with_confidence: bool = True   # False for a model that outputs labels only

    @classmethod
    def from_values(cls, values, index, mask_groups, with_confidence):
        """Camera ``index``'s configuration from the node's parameter values."""
        depth = values["depth_topics"][index] if any(values["depth_topics"]) else ""
        return cls(transport=values["transport"], output_qos=values["output_qos"], depth_topic=depth,
                   depth_tolerance_ms=values["depth_tolerance_ms"], mask_groups=mask_groups,
                   with_confidence=with_confidence)


class Camera:
    """One input topic: its output publishers, its subscriptions (image, camera_info, depth),
    made only while the camera is active and one of its outputs has a subscriber (publisher
    matched events, as image_pipeline does), and its latest camera_info."""

    def __init__(self, node, index, topic, qos, config):
        self.index, self.topic = index, topic
        self.info = None
        self._node, self._qos, self._config = node, qos, config
        self._active, self._subscriptions = False, []
        out_qos = output_qos(config.output_qos)
        events = PublisherEventCallbacks(matched=lambda _: self.update_subscriptions())
        names = [name for name, output in OUTPUTS.items()
                 if config.with_confidence or "confidence" not in output.needs]
        names += [f"mask/{group}" for group in config.mask_groups or {}]
        if config.depth_topic:
            names.append("points")
        self.publishers = {name: node.create_publisher(
            PointCloud2 if name == "points" else Image, sibling_topic(topic, f"segmentation/{name}"),
            out_qos, event_callbacks=events) for name in names}
        self.mask_groups = config.mask_groups or {}
        self.info_publisher = node.create_publisher(
            CameraInfo, sibling_topic(topic, "segmentation/camera_info"), out_qos, event_callbacks=events)
        self.depth = DepthPairing(config.depth_tolerance_ms) if config.depth_topic else None

    def set_active(self, active):
        """Subscribe (while watched) or unsubscribe; an inactive camera receives nothing."""
        self._active = active
        self.update_subscriptions()

    def watched(self):
        return any(p.get_subscription_count() > 0 for p in (*self.publishers.values(), self.info_publisher))

    def update_subscriptions(self):
        wanted = self._active and self.watched()
        if wanted and not self._subscriptions:
            self._subscriptions = self._subscribe()
        elif not wanted and self._subscriptions:
            for subscription in self._subscriptions:
                self._node.destroy_subscription(subscription)
            self._subscriptions = []

    def _subscribe(self):
        node, topic, qos, config = self._node, self.topic, self._qos, self._config
        # raw: frames stay serialised until the pipeline takes one (most are replaced before)
        kind, name = (CompressedImage, f"{topic.rstrip('/')}/compressed") if config.transport == "compressed" \
            else (Image, topic)
        made = [node.create_subscription(kind, name, lambda data: node.on_image(self, data, kind), qos, raw=True)]
        made.append(node.create_subscription(CameraInfo, sibling_topic(topic, "camera_info"), self.on_info, qos))
        if self.depth is not None:
            made.append(node.create_subscription(Image, config.depth_topic, self.depth.put, qos))
            made.append(node.create_subscription(CameraInfo, sibling_topic(config.depth_topic, "camera_info"),
                                                 lambda msg: setattr(self.depth, "info", msg), qos))
        return made

    def destroy(self):
        """Unsubscribe and remove the publishers (the node's cleanup)."""
        self.set_active(False)
        for publisher in (*self.publishers.values(), self.info_publisher):
            self._node.destroy_publisher(publisher)
        self.publishers = {}

    def on_info(self, msg):
        self.info = msg

    def wanted_outputs(self, settings):
        """The outputs that are enabled and have subscribers."""
        return {name for name, publisher in self.publishers.items()
                if is_enabled(name, settings.published) and publisher.get_subscription_count() > 0}

    def publish(self, message, result, outputs, settings):
        """Publish the wanted outputs of ``result`` with the input ``message``'s header: every
        message is built first, so a frame that fails is not published at all. Returns the
        reason the point cloud was left out, if it was (the other outputs still go out)."""
        header = message.header
        height, width = result.labels.shape
        ready = [(name, numpy_to_image(*output.image(result), header))
                 for name, output in OUTPUTS.items() if name in outputs]
        for group, ids in self.mask_groups.items():
            if f"mask/{group}" in outputs:
                ready.append((f"mask/{group}", numpy_to_image(mask(result.labels, ids), "mono8", header)))
        cloud_problem = None
        if "points" in outputs:
            points, cloud_problem = self._cloud(header, result, settings)
            if points is not None:
                ready.append(("points", points))
        info = self.info
        if info is not None and self.info_publisher.get_subscription_count() > 0:
            if (height, width) == (message.height, message.width):
                info = copy.copy(info)
                info.header = header
            else:
                info = scale_camera_info(info, width, height, header)
            ready.append((None, info))
        for name, msg in ready:
            (self.info_publisher if name is None else self.publishers[name]).publish(msg)
        return cloud_problem

    def _cloud(self, header, result, settings):
        """(PointCloud2 or None, why not)."""
        depth_msg = self.depth.match(header.stamp)
        if depth_msg is None:
            return None, "no depth frame with this stamp (within depth_tolerance_ms)"
        info = self.info or self.depth.info
        if info is None:
            return None, "no camera_info yet (intrinsics are needed to project depth)"
        try:
            return cloud(header, depth_msg, info, result, settings), None
        except (ValueError, ImageConversionError) as exc:
            return None, str(exc)
