"""What comes back from the engine: a :class:`SegmentationResult` per frame, its colours from the
palette and its overlay (numpy and OpenCV only: no torch, so a runtime that runs the whole frame
needs none)."""
from dataclasses import dataclass

import cv2
import numpy as np

from ..model.palette import overlay


@dataclass(frozen=True, slots=True)
class SegmentationResult:
    labels: np.ndarray             # H x W class indices, uint8 (uint16 above 255 classes)
    color: np.ndarray | None       # H x W x 3 uint8 RGB, the palette applied to labels (on request)
    confidence: np.ndarray | None = None  # H x W float32 top-class probability, on request
    overlay: np.ndarray | None = None     # H x W x 3 uint8 blend of image and colours, on request

    def confidence_mono8(self):
        """The confidence as a mono8 image (probability x 255, rounded)."""
        return (self.confidence * 255.0 + 0.5).astype(np.uint8)


def frame_result(labels, confidence, palette, with_color):
    """The result of one frame whose labels (and confidence) a runtime made as numpy arrays."""
    # np.take is several times faster than fancy indexing for a palette lookup
    color = np.take(palette, labels, axis=0) if with_color else None
    return SegmentationResult(labels, color, confidence)


def with_overlay(frame, result, alpha):
    """``result`` with the overlay of its colours on ``frame`` (resized to the output size)."""
    height, width = result.labels.shape
    if frame.shape[:2] != (height, width):  # output_resolution "network"
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    blend = overlay(np.ascontiguousarray(frame), result.color, alpha)
    return SegmentationResult(result.labels, result.color, result.confidence, blend)
