"""Palettes and image helpers shared by the engine, the node and the tools (numpy, no ROS)."""
import numpy as np

try:  # OpenCV's colour conversions are several times faster than numpy's strided copies.
    import cv2
except ImportError:  # pragma: no cover - opencv is a requirement, but keep the helpers usable
    cv2 = None

ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")


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


def to_rgb(image, encoding):
    """An image in a ROS ``encoding`` (rgb8, bgr8, rgba8, bgra8, mono8) as H x W x 3 uint8 RGB.

    rgb8 input is returned as is (no copy); the others are converted into a new array.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unsupported encoding {encoding!r}; supported: {', '.join(ENCODINGS)}")
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise TypeError(f"{encoding} image must be a uint8 numpy array, got "
                        f"{getattr(image, 'dtype', type(image).__name__)}")
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}[encoding]
    if encoding == "mono8" and image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] != channels or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{encoding} image must be H x W x {channels} with H, W > 0, got shape {image.shape}")
    if encoding == "rgb8":
        return image
    if cv2 is not None:
        code = {"bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB,
                "bgra8": cv2.COLOR_BGRA2RGB, "mono8": cv2.COLOR_GRAY2RGB}[encoding]
        return cv2.cvtColor(np.ascontiguousarray(image), code)
    if encoding == "mono8":
        return np.repeat(image, 3, axis=2)
    order = [2, 1, 0] if encoding.startswith("bgr") else [0, 1, 2]
    return np.ascontiguousarray(image[:, :, order])


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
    if cv2 is not None:
        return cv2.addWeighted(rgb, 1.0 - alpha, color, alpha, 0.0)
    blend = rgb.astype(np.float32) * (1.0 - alpha) + color.astype(np.float32) * alpha
    return np.clip(blend + 0.5, 0, 255).astype(np.uint8)
