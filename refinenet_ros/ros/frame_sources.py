"""The frame readers behind image_source: a video file, an image folder, a rosbag2 recording
(sqlite3 or mcap; CompressedImage decoded) or a V4L2 camera, each a generator of
``(bgr array or sensor_msgs/Image, source time in s or None)``."""
import pathlib

import cv2
import numpy as np
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image

from ..engine.frames import IMAGE_SUFFIXES, folder_images, read_bgr

BAG_IMAGE_TYPES = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage}


class SourceError(RuntimeError):
    """A source that cannot be opened or read, with the path and reason."""


def source_kind(source):
    """"camera", "folder", "bag" or "video"; raises SourceError for a path that does not exist."""
    if source.isdigit() or source.startswith("/dev/video"):
        return "camera"
    path = pathlib.Path(source)
    if not path.exists():
        raise SourceError(f"source {source!r} does not exist (expected a video file, image folder, "
                          "rosbag2 folder or file, /dev/videoN or a camera index)")
    if path.is_dir():
        if (path / "metadata.yaml").is_file():
            return "bag"
        return "folder"
    if path.suffix in {".db3", ".mcap"}:
        return "bag"
    return "video"


def _folder_frames(folder):
    files = folder_images(folder)
    if not files:
        raise SourceError(f"image folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    for path in files:
        try:
            yield read_bgr(path), None
        except ValueError as exc:
            raise SourceError(str(exc)) from None


def _capture_frames(capture, name, camera):
    if not capture.isOpened():
        raise SourceError(f"OpenCV cannot open {name}")
    frame_period = 1.0 / (capture.get(cv2.CAP_PROP_FPS) or 30.0)
    previous = -frame_period
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                if camera:
                    raise SourceError(f"camera {name} stopped delivering frames")
                return
            if camera:  # a camera paces itself
                yield frame, None
                continue
            # A video carries its own presentation times; some streams report none (0), so
            # fall back to the nominal frame rate when the clock does not advance.
            position = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            previous = position if position > previous else previous + frame_period
            yield frame, previous
    finally:
        capture.release()


def _camera_frames(source, width, height):
    device = int(source) if source.isdigit() else source
    capture = cv2.VideoCapture(device, cv2.CAP_V4L2)
    if width and height:
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
    return _capture_frames(capture, f"camera {source}", camera=True)


def _bag_frames(path, topic):
    """Yields sensor_msgs/Image messages (CompressedImage is decoded) and their bag time."""
    from rosbags.highlevel import AnyReader, AnyReaderError

    path = pathlib.Path(path)
    try:
        with AnyReader([path.parent if path.is_file() else path]) as reader:
            images = [c for c in reader.connections if c.msgtype in BAG_IMAGE_TYPES]
            if topic:
                images = [c for c in images if c.topic == topic]
            if not images:
                found = sorted(f"{c.topic} ({c.msgtype})" for c in reader.connections)
                wanted = f"topic {topic!r} of type " if topic else ""
                raise SourceError(f"bag {path} has no {wanted}sensor_msgs Image/CompressedImage "
                                  f"topic; it has: {', '.join(found) or 'nothing'}")
            connection = images[0]
            for _, stamp_ns, raw in reader.messages(connections=[connection]):
                msg = deserialize_message(raw, BAG_IMAGE_TYPES[connection.msgtype])
                if isinstance(msg, CompressedImage):
                    frame = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_COLOR)
                    if frame is None:
                        raise SourceError(f"bag {path}: undecodable CompressedImage ({msg.format})")
                    msg = image_msg(frame, msg.header)
                yield msg, stamp_ns / 1e9
    except AnyReaderError as error:
        raise SourceError(f"cannot read bag {path}: {error}") from error


def open_frames(source, bag_topic="", width=0, height=0):
    """The frame generator for ``source``: yields (bgr ndarray or Image msg, time in s or None)."""
    kind = source_kind(source)
    if kind == "camera":
        return _camera_frames(source, width, height)
    if kind == "folder":
        return _folder_frames(source)
    if kind == "bag":
        return _bag_frames(source, bag_topic)
    return _capture_frames(cv2.VideoCapture(source), f"video {source}", camera=False)


def image_msg(bgr, header=None):
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = bgr.shape[:2]
    msg.encoding = "bgr8"
    msg.step = msg.width * 3
    msg.data = np.ascontiguousarray(bgr).tobytes()  # bytes: assigning an ndarray is far slower
    return msg


def resize_image_msg(msg, width, height):
    """Resizes a bag image (any 8-bit 1/3/4-channel encoding) to width x height."""
    channels = msg.step // msg.width if msg.width else 0
    if channels not in (1, 3, 4) or msg.step != msg.width * channels:
        return msg  # padded rows or 16-bit data: publish unchanged rather than guess
    pixels = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, channels)
    resized = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)
    msg.height, msg.width, msg.step = height, width, width * channels
    msg.data = resized.tobytes()
    return msg
