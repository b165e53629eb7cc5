"""Image encodings, one table: ROS ``sensor_msgs/Image`` encoding names -> element type,
channels and the conversion to the network's RGB. Used by the message conversions, image_source and
the tools; numpy and OpenCV only (no ROS import, so ``to_rgb`` serves plain Python callers too).

Generic encodings follow OpenCV/cv_bridge: ``8UC3`` is BGR, ``8UC4`` BGRA; 16-bit images become
8 bit by keeping the high byte, as cv_bridge does.
"""
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Encoding:
    dtype: type
    channels: int
    to_rgb: int | None  # cv2.cvtColor code to RGB; None: already RGB


ENCODINGS = {
    "rgb8": Encoding(np.uint8, 3, None),
    "bgr8": Encoding(np.uint8, 3, cv2.COLOR_BGR2RGB),
    "rgba8": Encoding(np.uint8, 4, cv2.COLOR_RGBA2RGB),
    "bgra8": Encoding(np.uint8, 4, cv2.COLOR_BGRA2RGB),
    "mono8": Encoding(np.uint8, 1, cv2.COLOR_GRAY2RGB),
    "mono16": Encoding(np.uint16, 1, cv2.COLOR_GRAY2RGB),
    "8UC1": Encoding(np.uint8, 1, cv2.COLOR_GRAY2RGB),
    "8UC3": Encoding(np.uint8, 3, cv2.COLOR_BGR2RGB),
    "8UC4": Encoding(np.uint8, 4, cv2.COLOR_BGRA2RGB),
    "16UC1": Encoding(np.uint16, 1, cv2.COLOR_GRAY2RGB),
}


def to_rgb(image, encoding):
    """An image in a ROS ``encoding`` (see :data:`ENCODINGS`) as H x W x 3 uint8 RGB.

    rgb8 input is returned as is (no copy); the others are converted into a new array.
    """
    spec = ENCODINGS.get(encoding)
    if spec is None:
        raise ValueError(f"unsupported encoding {str(encoding)[:64]!r}; supported: {', '.join(ENCODINGS)}")
    if not isinstance(image, np.ndarray) or image.dtype != spec.dtype:
        raise TypeError(f"{encoding} image must be a {np.dtype(spec.dtype).name} numpy array, got "
                        f"{getattr(image, 'dtype', type(image).__name__)}")
    if spec.channels == 1 and image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    expected_ndim = 2 if spec.channels == 1 else 3
    if image.ndim != expected_ndim or (expected_ndim == 3 and image.shape[2] != spec.channels) \
            or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{encoding} image must be H x W x {spec.channels} with H, W > 0, got shape {image.shape}")
    if spec.dtype == np.uint16:  # keep the high byte, as cv_bridge's 16 -> 8 bit conversion
        image = (image >> 8).astype(np.uint8)
    if spec.to_rgb is None:
        return image
    return cv2.cvtColor(np.ascontiguousarray(image), spec.to_rgb)


# Depth images (registered to a colour camera): encoding -> (element type, metres per unit).
DEPTH_ENCODINGS = {"16UC1": (np.uint16, 0.001), "32FC1": (np.float32, 1.0)}
