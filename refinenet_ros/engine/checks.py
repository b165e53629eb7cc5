"""Checks of the Segmenter's arguments and frames, each with an error that says what and where."""
import numpy as np


def fit(size, max_pixels):
    """``size`` (h, w), scaled down with its aspect ratio to at most ``max_pixels`` pixels."""
    h, w = size
    if not max_pixels or h * w <= max_pixels:
        return (h, w)
    scale = (max_pixels / (h * w)) ** 0.5
    return (max(1, int(h * scale)), max(1, int(w * scale)))


def check_images(images):
    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)  # an N x H x W x 3 array is a batch of frames
    if isinstance(images, np.ndarray) or not isinstance(images, (list, tuple)):
        raise TypeError(f"segment() takes a list of H x W x 3 uint8 arrays, got "
                        f"{type(images).__name__}" + (f" of shape {images.shape}; wrap a single frame "
                                                      f"in a list" if isinstance(images, np.ndarray) else ""))
    for i, image in enumerate(images):
        if not isinstance(image, np.ndarray):
            raise TypeError(f"image {i}: expected a numpy array, got {type(image).__name__}")
        if image.dtype != np.uint8:
            raise TypeError(f"image {i}: expected dtype uint8, got {image.dtype}")
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image {i}: expected H x W x 3 RGB, got shape {image.shape} "
                             f"(convert other encodings with refinenet_ros.engine.to_rgb)")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"image {i}: empty image of shape {image.shape}")
    return images


def check_streams(streams):
    """``streams`` as given: "auto" (0 or None too) or an integer >= 1."""
    if streams in ("auto", 0, None):
        return "auto"
    if isinstance(streams, bool) or not isinstance(streams, (int, np.integer)) or streams < 1:
        raise ValueError(f"streams must be 'auto' or an integer >= 1, got {streams!r}")
    return int(streams)


def check_size(size, name):
    if size is None:
        return None
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (height, width) or None, got {size!r}") from None
    if h < 1 or w < 1 or (h, w) != tuple(size):
        raise ValueError(f"{name} must be two positive integers, got {size!r}")
    return (h, w)


def check_scales(scales):
    try:
        scales = tuple(float(s) for s in scales)
    except (TypeError, ValueError):
        raise ValueError(f"scales must be a sequence of positive numbers, got {scales!r}") from None
    if not scales or any(not s > 0 or s == float("inf") for s in scales):
        raise ValueError(f"scales must be a non-empty sequence of positive numbers, got {scales!r}")
    return scales


def check_class_names(names, num_classes):
    if names is None:
        return [f"class_{i}" for i in range(num_classes)]
    names = [str(n) for n in names]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names given for {num_classes} classes")
    return names
