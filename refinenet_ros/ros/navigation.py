"""Navigation outputs of a camera: depth frames paired with colour frames by stamp (a small
bounded buffer; message_filters is not a dependency), the organised semantic point cloud, and
class-group masks. Consumers: Nav2's semantic segmentation layer (mask, confidence, LabelInfo,
pixel-aligned cloud), elevation mapping, planners that want "drivable" vs "obstacle"."""
import re
import threading
from collections import deque

import numpy as np
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from .projection import depth_in_metres, project, resize_depth
from .conversions import image_to_numpy, pointcloud_message, scale_camera_info
from .params import sibling_topic

# Class metadata is latched, as vision_msgs and Nav2's semantic segmentation layer expect.
LABEL_INFO_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)
DEPTH_BUFFER = 30  # depth frames kept per camera (1 s at 30 Hz)
GROUP_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def stamp_ns(stamp):
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class DepthPairing:
    """The recent depth frames of one camera, looked up by a colour frame's stamp."""

    def __init__(self, tolerance_ms):
        self.tolerance_ns = int(tolerance_ms * 1e6)
        self.frames = deque(maxlen=DEPTH_BUFFER)
        self.info = None  # the depth topic's own camera_info, used when the colour one is missing
        self.lock = threading.Lock()

    def put(self, msg):
        with self.lock:
            self.frames.append(msg)

    def match(self, stamp):
        """The depth frame closest to ``stamp`` within the tolerance, else None."""
        wanted = stamp_ns(stamp)
        with self.lock:
            best = min(self.frames, key=lambda m: abs(stamp_ns(m.header.stamp) - wanted), default=None)
        if best is None or abs(stamp_ns(best.header.stamp) - wanted) > self.tolerance_ns:
            return None
        return best


def cloud(header, depth_msg, info, result, settings):
    """The semantic PointCloud2 of ``result`` (labels, colours, confidence) from a registered
    depth frame and the camera's intrinsics. Raises ValueError (or ImageConversionError) with
    the reason when the depth cannot be projected correctly."""
    height, width = result.labels.shape
    depth = depth_in_metres(image_to_numpy(depth_msg), depth_msg.encoding, settings.depth_min_m,
                            settings.depth_max_m)
    depth = resize_depth(depth, height, width)
    if (info.width, info.height) != (width, height):
        info = scale_camera_info(info, width, height)
    fx, cx, fy, cy = info.k[0], info.k[2], info.k[4], info.k[5]
    stride = settings.cloud_stride
    points = project(depth, fx, fy, cx, cy, stride)
    confidence = result.confidence if result.confidence is not None else np.full((height, width), np.nan, np.float32)
    fields = (points, result.color[::stride, ::stride], result.labels[::stride, ::stride],
              confidence[::stride, ::stride])
    if stride == 1:
        return pointcloud_message(header, *fields, organised=True)
    valid = np.isfinite(points[..., 2])
    return pointcloud_message(header, *(field[valid] for field in fields), organised=False)


def parse_mask_groups(entries, class_names):
    """{group: class ids} from entries like "drivable: road, pavement"; ValueError naming the
    entry, or the unknown class and the model's classes."""
    groups = {}
    for entry in (e for e in entries if e.strip()):
        name, sep, members = entry.partition(":")
        name = name.strip()
        if not sep or not GROUP_NAME.match(name):
            raise ValueError(f"mask_groups entry {entry[:100]!r}: expected 'name: class, class' with a name of "
                             f"letters, digits and _")
        ids = []
        for member in (m.strip() for m in members.split(",")):
            if member not in class_names:
                raise ValueError(f"mask_groups {name!r}: unknown class {member[:100]!r}; the model's classes "
                                 f"are {', '.join(class_names)}")
            ids.append(class_names.index(member))
        if name in groups:
            raise ValueError(f"mask_groups: group {name!r} is given twice")
        groups[name] = np.array(ids, dtype=np.int64)
    return groups


def mask(labels, ids):
    """mono8 mask: 255 where the label is one of ``ids``, else 0."""
    return np.isin(labels, ids).astype(np.uint8) * np.uint8(255)


def publish_label_info(node, topics, class_names):
    """Latched vision_msgs/LabelInfo per camera: class ids and names of the loaded model."""
    try:
        from vision_msgs.msg import LabelInfo, VisionClass
    except ImportError:
        node.get_logger().warning("vision_msgs is not installed: no <ns>/segmentation/label_info "
                                  "(class metadata) is published")
        return []
    message = LabelInfo(class_map=[VisionClass(class_id=i, class_name=name) for i, name in enumerate(class_names)],
                        threshold=0.0)  # every pixel gets its top class: no threshold applies
    message.header.stamp = node.get_clock().now().to_msg()
    publishers = []
    for topic in topics:
        publisher = node.create_publisher(LabelInfo, sibling_topic(topic, "segmentation/label_info"),
                                          LABEL_INFO_QOS)
        publisher.publish(message)
        publishers.append(publisher)
    return publishers
