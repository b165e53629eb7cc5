"""Depth images to 3-D points in the camera's optical frame (numpy, vectorised; no ROS).

A registered depth image shares the colour camera's pixel grid, so pixel (u, v) at depth z is
``x = (u - cx) z / fx``, ``y = (v - cy) z / fy`` (x right, y down, z forward: REP-103's
optical frame). Invalid depth (0, NaN, outside [min, max]) gives NaN points, never garbage.
"""
import cv2
import numpy as np

from .encodings import DEPTH_ENCODINGS


def depth_in_metres(depth, encoding, min_m, max_m):
    """``depth`` (16UC1 millimetres or 32FC1 metres) as float32 metres, NaN where invalid."""
    if encoding not in DEPTH_ENCODINGS:
        raise ValueError(f"depth encoding {str(encoding)[:64]!r} is not supported "
                         f"(use {' or '.join(DEPTH_ENCODINGS)})")
    metres = depth.astype(np.float32) * np.float32(DEPTH_ENCODINGS[encoding][1])
    metres[~((metres >= min_m) & (metres <= max_m))] = np.nan  # also NaN and 0 (when min > 0)
    return metres


def resize_depth(depth, height, width):
    """Nearest-neighbour resampling (averaging depths across an edge would invent surfaces).
    Refuses a different aspect ratio: the depth would not be aligned with the labels."""
    h, w = depth.shape
    if (h, w) == (height, width):
        return depth
    if abs(h * width - w * height) > max(h, w, height, width):
        raise ValueError(f"depth {w}x{h} has another aspect ratio than the labels {width}x{height}: "
                         f"not registered to the colour image")
    return cv2.resize(depth, (width, height), interpolation=cv2.INTER_NEAREST)


def project(depth_m, fx, fy, cx, cy, stride=1):
    """(H', W', 3) float32 points for every ``stride``-th pixel of ``depth_m`` (metres)."""
    if not (fx > 0 and fy > 0):
        raise ValueError(f"camera_info has no focal length (fx={fx}, fy={fy}): uncalibrated camera")
    z = depth_m[::stride, ::stride]
    v, u = np.mgrid[0:depth_m.shape[0]:stride, 0:depth_m.shape[1]:stride].astype(np.float32)
    points = np.empty((*z.shape, 3), np.float32)
    points[..., 0] = (u - np.float32(cx)) * z / np.float32(fx)
    points[..., 1] = (v - np.float32(cy)) * z / np.float32(fy)
    points[..., 2] = z
    return points
