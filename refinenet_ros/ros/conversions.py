"""sensor_msgs/Image <-> numpy, and CameraInfo scaling: the node's only place that knows
the message layouts.

Semantics follow cv_bridge (not installable here): ``step`` and ``is_bigendian`` are
honoured, generic encodings are OpenCV's (``8UC3`` is BGR, ``8UC4`` BGRA), mono16 becomes
8 bit by dropping the low byte. Receiving is zero-copy (``np.frombuffer`` on the message
buffer); sending assigns ``bytes`` to ``msg.data`` (assigning an ndarray is ~100x slower).
"""
import sys

import cv2
import numpy as np
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField

from .encodings import DEPTH_ENCODINGS, ENCODINGS, to_rgb

SUPPORTED_ENCODINGS = tuple(ENCODINGS) + tuple(e for e in DEPTH_ENCODINGS if e not in ENCODINGS)
# The semantic point cloud's points: x y z (optical frame, metres), rgb (the class colour, packed
# as PCL does), label (class id) and confidence (top-class probability).
CLOUD_POINT = np.dtype({"names": ["x", "y", "z", "rgb", "label", "confidence"],
                        "formats": [np.float32, np.float32, np.float32, np.float32, np.uint16, np.float32],
                        "offsets": [0, 4, 8, 12, 16, 20], "itemsize": 24})
_CLOUD_FIELDS = [PointField(name=n, offset=o, count=1, datatype=t) for n, o, t in (
    ("x", 0, PointField.FLOAT32), ("y", 4, PointField.FLOAT32), ("z", 8, PointField.FLOAT32),
    ("rgb", 12, PointField.FLOAT32), ("label", 16, PointField.UINT16), ("confidence", 20, PointField.FLOAT32))]
_NATIVE_BIG_ENDIAN = sys.byteorder == "big"


class ImageConversionError(ValueError):
    """A sensor_msgs/Image that cannot be decoded; the message says why."""


def _layout(encoding):
    """(element type, channels) of a colour or depth ``encoding``; ImageConversionError if unknown."""
    if encoding in ENCODINGS:
        return ENCODINGS[encoding].dtype, ENCODINGS[encoding].channels
    if encoding in DEPTH_ENCODINGS:
        return DEPTH_ENCODINGS[encoding][0], 1
    raise ImageConversionError(
        f"unsupported encoding {shorten(encoding, 64)!r} (supported: {', '.join(SUPPORTED_ENCODINGS)})")


def image_to_numpy(msg):
    """View of ``msg``'s pixels as an ``H x W x C`` array (``H x W`` for one channel).

    No copy when the data is in native byte order; rows may be strided when ``step`` has padding.
    Raises :class:`ImageConversionError` for an unsupported encoding, an empty image, a ``step``
    too small for the width, or data of the wrong length.
    """
    dtype, channels = _layout(msg.encoding)
    height, width, step = msg.height, msg.width, msg.step
    if height == 0 or width == 0:
        raise ImageConversionError(f"empty image ({width}x{height})")
    dtype = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than width {width} x {channels * dtype.itemsize} bytes per pixel = {row_bytes}")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != step * height:
        raise ImageConversionError(
            f"data is {data.size} bytes, expected step {step} x height {height} = {step * height}"
            + (" (truncated)" if data.size < step * height else ""))
    shape = (height, width, channels) if channels > 1 else (height, width)
    strides = (step, channels * dtype.itemsize, dtype.itemsize)[:len(shape)]
    array = np.ndarray(shape, dtype=dtype, buffer=data, strides=strides)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array


COMPRESSED_FORMATS = ("jpeg", "jpg", "png")


def frame_to_rgb(message):
    """``H x W x 3`` uint8 RGB of a camera frame: a sensor_msgs/Image or CompressedImage."""
    if isinstance(message, CompressedImage):
        return compressed_to_rgb(message)
    return to_rgb(image_to_numpy(message), message.encoding)


def deserialize(data, message_type):
    """A message of ``message_type`` from its serialised bytes (a raw subscription's)."""
    try:
        return deserialize_message(data, message_type)
    except Exception as exc:  # noqa: BLE001 - rclpy raises its own types for malformed CDR
        raise ImageConversionError(f"cannot deserialise {len(data)} bytes as {message_type.__name__}: "
                                   f"{shorten(str(exc), 120)}") from None


def compressed_to_rgb(msg):
    """``H x W x 3`` uint8 RGB from a sensor_msgs/CompressedImage (jpeg or png, as
    image_transport's compressed plugin writes them: ``format`` is "jpeg", "png" or
    "<encoding>; <codec> compressed <encoding>"). Raises :class:`ImageConversionError` for an
    empty, undecodable or unsupported (e.g. compressedDepth) image."""
    fmt = (msg.format or "").lower()
    codec = next((c for c in COMPRESSED_FORMATS if c in fmt), None)
    if codec is None or "compresseddepth" in fmt.replace(" ", ""):
        raise ImageConversionError(f"unsupported CompressedImage format {shorten(msg.format, 64)!r} "
                                   f"(supported: jpeg, png)")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageConversionError("empty CompressedImage (0 bytes)")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)  # any depth/channels -> 8-bit BGR
    if bgr is None or bgr.size == 0:
        raise ImageConversionError(f"cannot decode {data.size} bytes as {codec}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def shorten(text, limit=300):
    """User-controlled text cut for logs and diagnostics (a malformed message can carry megabytes)."""
    text = str(text)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def numpy_to_image(array, encoding, header=None):
    """A sensor_msgs/Image holding ``array`` (``H x W`` or ``H x W x C``) with ``encoding``."""
    dtype, channels = _layout(encoding)
    array = np.asarray(array)
    got_channels = 1 if array.ndim == 2 else array.shape[2]
    if array.ndim not in (2, 3) or got_channels != channels or array.dtype != dtype:
        raise ImageConversionError(
            f"{encoding} needs {channels} channel(s) of {np.dtype(dtype).name}, "
            f"got shape {array.shape} of {array.dtype}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = array.shape[:2]
    msg.encoding = encoding
    msg.is_bigendian = int(_NATIVE_BIG_ENDIAN)
    msg.step = msg.width * channels * array.dtype.itemsize
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


def scale_camera_info(info, width, height, header=None):
    """A copy of ``info`` for the same image resized to ``width`` x ``height``.

    ROI and binning are folded into K and P first (the result describes the resized image
    itself, binning 1, no ROI); the scaling maps pixel centres the way half-pixel-centred
    resizes do (cv2.resize, F.interpolate with align_corners=False): u' = (u + 0.5) s - 0.5.
    """
    bin_x, bin_y = max(info.binning_x, 1), max(info.binning_y, 1)
    roi = info.roi
    has_roi = roi.width > 0 and roi.height > 0
    in_width = (roi.width if has_roi else info.width) / bin_x
    in_height = (roi.height if has_roi else info.height) / bin_y
    if in_width <= 0 or in_height <= 0:
        raise ImageConversionError(f"camera_info has no size ({info.width}x{info.height})")
    # full-resolution pixel -> received-image pixel: subtract ROI offset, then bin
    off_x, off_y = (roi.x_offset, roi.y_offset) if has_roi else (0, 0)
    scale_x, scale_y = width / in_width / bin_x, height / in_height / bin_y
    shift_x = (0.5 - off_x) * scale_x - 0.5
    shift_y = (0.5 - off_y) * scale_y - 0.5
    # u' = scale_x * u + shift_x applied to the rows of K and P: row0 = s*row0 + shift*row2
    out = CameraInfo()
    out.header = header if header is not None else info.header
    out.width, out.height = int(width), int(height)
    out.distortion_model = info.distortion_model
    out.d = list(info.d)
    out.r = list(info.r)
    k = np.array(info.k, dtype=np.float64).reshape(3, 3)
    p = np.array(info.p, dtype=np.float64).reshape(3, 4)
    for matrix in (k, p):
        matrix[0] = scale_x * matrix[0] + shift_x * matrix[2]
        matrix[1] = scale_y * matrix[1] + shift_y * matrix[2]
    out.k = k.ravel().tolist()
    out.p = p.ravel().tolist()
    return out


def pointcloud_message(header, points, colors, labels, confidence, organised):
    """A sensor_msgs/PointCloud2 of :data:`CLOUD_POINT` points; ``organised`` keeps the
    H x W layout of the arrays (pixel-aligned with the label image), else one row."""
    cloud = np.empty(labels.shape, CLOUD_POINT)
    cloud["x"], cloud["y"], cloud["z"] = points[..., 0], points[..., 1], points[..., 2]
    rgb = (colors[..., 0].astype(np.uint32) << 16) | (colors[..., 1].astype(np.uint32) << 8) | colors[..., 2]
    cloud["rgb"] = rgb.view(np.float32)
    cloud["label"], cloud["confidence"] = labels, confidence
    msg = PointCloud2(header=header, fields=_CLOUD_FIELDS, is_bigendian=_NATIVE_BIG_ENDIAN,
                      point_step=CLOUD_POINT.itemsize, is_dense=False)
    msg.height, msg.width = cloud.shape if organised else (1, cloud.size)
    msg.row_step = msg.width * msg.point_step
    msg.data = cloud.tobytes()
    return msg
