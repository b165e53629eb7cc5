"""Palettes and the overlay blend, shared by the engine, the node and the tools (no ROS)."""
import cv2
import numpy as np


def voc_palette(num_classes):
    """The PASCAL VOC colour map (bit-interleaved class index), distinct for any class count
    up to 2**24. Class 0 is black, 1 dark red, 2 dark green, ..."""
    ids = np.arange(num_classes, dtype=np.int64)
    palette = np.zeros((num_classes, 3), dtype=np.uint8)
    for bit in range(7, -1, -1):
        for channel in range(3):
            palette[:, channel] |= (((ids >> channel) & 1) << bit).astype(np.uint8)
        ids >>= 3
    return palette


def check_palette(palette, num_classes):
    """A user palette as a ``num_classes x 3`` uint8 array (extra rows are dropped)."""
    array = np.asarray(palette)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"palette must be a K x 3 array of RGB colours, got shape {array.shape}")
    if array.shape[0] < num_classes:
        raise ValueError(f"palette has {array.shape[0]} colours but the model has {num_classes} classes")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
            raise ValueError(f"palette must hold numbers in 0..255, got dtype {array.dtype}")
        if array.min() < 0 or array.max() > 255 or np.any(array != np.round(array)):
            raise ValueError("palette values must be integers in 0..255")
        array = array.astype(np.uint8)
    return np.ascontiguousarray(array[:num_classes])


def overlay(rgb, color, alpha=0.5):
    """Blend a colour label image over an RGB frame: ``(1 - alpha) * rgb + alpha * color``."""
    for name, array in (("rgb", rgb), ("color", color)):
        if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 3 \
                or array.shape[2] != 3:
            raise ValueError(f"overlay: {name} must be an H x W x 3 uint8 array, got "
                             f"{getattr(array, 'dtype', type(array).__name__)} "
                             f"{getattr(array, 'shape', '')}")
    if rgb.shape != color.shape:
        raise ValueError(f"overlay: rgb {rgb.shape} and color {color.shape} differ in size")
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay: alpha must be in [0, 1], got {alpha}")
    return cv2.addWeighted(rgb, 1.0 - alpha, color, alpha, 0.0)
