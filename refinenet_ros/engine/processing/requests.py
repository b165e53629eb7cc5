"""One ``segment()`` call, checked: its frames, the network size and output size of each, and the
outputs asked for; every argument refused with an error that says what and where."""
import importlib.util
from dataclasses import dataclass

import numpy as np

from ...choices import OUTPUT_RESOLUTIONS


@dataclass(frozen=True)
class FrameRequest:
    frames: list                # H x W x 3 uint8 RGB arrays
    network_sizes: list         # per frame: the (h, w) it runs at
    output_sizes: list          # per frame: the (h, w) of its results
    with_confidence: bool
    with_color: bool

    @property
    def pixels(self):
        """The elements of all its frames (what the memory guard watches)."""
        return sum(frame.size for frame in self.frames)


def frame_request(images, size, output_resolution, max_pixels, with_confidence, with_color):
    """The checked request: ``size`` is the network size of every frame (None: each frame's own,
    scaled down to at most ``max_pixels``); ``output_resolution`` "input" (each frame's size) or
    "network" (its network size)."""
    frames = check_images(images)
    if output_resolution not in OUTPUT_RESOLUTIONS:
        raise ValueError(f"output_resolution must be one of {OUTPUT_RESOLUTIONS}, got {output_resolution!r}")
    network_sizes = [size or native_size(frame.shape[:2], max_pixels) for frame in frames]
    output_sizes = [frame.shape[:2] if output_resolution == "input" else net
                    for frame, net in zip(frames, network_sizes)]
    return FrameRequest(frames, network_sizes, output_sizes, bool(with_confidence), bool(with_color))


def native_size(size, max_pixels):
    """A frame's own ``size`` (h, w), scaled down with its aspect ratio to at most ``max_pixels``."""
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
                             f"(convert other encodings with refinenet_ros.ros.encodings.to_rgb)")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"image {i}: empty image of shape {image.shape}")
    return list(images)


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


def network_size(size, fixed):
    """A checked (h, w) or None; a static model's own ``fixed`` size wherever None is asked for."""
    size = check_size(size, "input_size")
    if fixed is not None and size not in (None, fixed):
        raise ValueError(f"input_size={size} but the ONNX model only accepts {fixed} (a static export)")
    return fixed if size is None else size


def static_size_refusal(model_name, fixed, size):
    """Why a model that only takes ``fixed`` (h, w) cannot run at ``size``, or None."""
    if fixed is not None and size is not None and tuple(size) != tuple(fixed):
        return (f"the model {model_name} only takes {fixed[1]}x{fixed[0]} input (a static model); "
                f"set input_width/input_height to 0 or to that size")
    return None


def check_averaging(scales, flip, description):
    """Refuse several ``scales`` or a ``flip`` where they cannot run: they average probabilities,
    in the engine's torch code."""
    if tuple(scales) == (1.0,) and not flip:
        return
    if not description.gives_confidence:
        raise ValueError(f"scales and flip average probabilities; {description.name} outputs labels only")
    if importlib.util.find_spec("torch") is None:
        raise ValueError("scales and flip average probabilities in the engine's torch code, and torch is not "
                         "installed: run one scale without flip, or install torch")


def check_scales(scales):
    try:
        scales = tuple(float(s) for s in scales)
    except (TypeError, ValueError):
        raise ValueError(f"scales must be a sequence of positive numbers, got {scales!r}") from None
    if not scales or any(not s > 0 or s == float("inf") for s in scales):
        raise ValueError(f"scales must be a non-empty sequence of positive numbers, got {scales!r}")
    return scales
