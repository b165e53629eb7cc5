"""Labels that hold still: a causal filter of each camera's labels over time (numpy and OpenCV only).

Per camera the filter keeps the previous frame's filtered labels and their support (a confidence).
Each new frame first moves that state to itself by the image motion between the two frames (dense
optical flow, OpenCV's DIS, on small grey frames; pixels whose brightness does not match after the
move are occluded or new and take the new labels), then updates every pixel with hysteresis:

- the new label agrees: the support becomes the larger of the new confidence and the old support;
- the new label disagrees with more confidence than the support: the new label wins at once (a
  person walking in keeps a sharp outline);
- the new label disagrees with less: the old label stays, its support shrinks by :data:`DECAY`,
  so a contradiction that persists wins within a few frames, and one that flickers never.

The state starts afresh, with no ghost of the old scene, when the frame size changes, a gap between
frames exceeds :data:`MAX_GAP_S`, the motion cannot be estimated, or the camera's times go back (a
restart or a replayed bag). Frames dropped before segmentation are simply gaps. A model without
confidence (labels only) passes through unchanged.
"""
import functools
import threading
from dataclasses import dataclass

import cv2
import numpy as np

FLOW_WIDTH = 160          # pixels across the grey frames the motion is estimated on
DECAY = 0.9               # support kept by a label that a weaker new label contradicts (measured:
                          # docs/performance.md, "Labels that hold still")
MAX_GAP_S = 1.0           # longer between two frames: the scene may have changed, start afresh
OCCLUDED_LEVELS = 24      # grey levels (of 255) apart after the move: the pixel is new
LOST_SHARE = 0.5          # above this share of occluded pixels the motion is not estimable


@dataclass
class _State:
    grey: np.ndarray      # the frame's small grey image
    labels: np.ndarray
    support: np.ndarray   # float32 confidence of the filtered labels
    time: float


class TemporalFilter:
    """Filtered labels per camera (cameras are any hashable names)."""

    def __init__(self):
        self._states, self._lock = {}, threading.Lock()
        self._flow = threading.local()  # DIS objects are not thread-safe: one per calling thread

    def reset(self, camera=None):
        """Forget ``camera``'s state (every camera's with None)."""
        with self._lock:
            if camera is None:
                self._states.clear()
            else:
                self._states.pop(camera, None)

    def results(self, results, frames, cameras, times, with_confidence, with_color, palette):
        """``results`` (SegmentationResults of ``frames``, confidence given) filtered per camera:
        labels, colours from ``palette`` where asked, confidence where asked."""
        from .results import SegmentationResult, frame_result
        filtered = []
        for result, frame, camera, at in zip(results, frames, cameras, times):
            labels, confidence = self(camera, frame, result.labels, result.confidence, at)
            kept = frame_result(labels, confidence, palette, with_color)
            filtered.append(kept if with_confidence else SegmentationResult(kept.labels, kept.color))
        return filtered

    def __call__(self, camera, frame, labels, confidence, time):
        """(labels, confidence) of ``camera``'s frame (H x W x 3 uint8 RGB, any size) at ``time``
        (seconds), its per-frame ``labels`` and ``confidence`` (None: passed through) filtered."""
        if confidence is None:
            return labels, confidence
        grey = _small_grey(frame, labels.shape)
        with self._lock:
            state = self._states.get(camera)
        moved = self._moved(state, grey, labels.shape, time) if state is not None else None
        if moved is None:
            out_labels, out_support = labels.copy(), confidence.astype(np.float32, copy=True)
        else:
            out_labels, out_support = _update(*moved, labels, confidence)
        with self._lock:
            self._states[camera] = _State(grey, out_labels, out_support, time)
        return out_labels, out_support

    def _moved(self, state, grey, shape, time):
        """(labels, support, new-pixel mask) of ``state`` moved to the new frame, or None (afresh)."""
        if state.labels.shape != shape or state.grey.shape != grey.shape or not 0 < time - state.time <= MAX_GAP_S:
            return None
        if not hasattr(self._flow, "dis"):
            self._flow.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        flow = self._flow.dis.calc(grey, state.grey, None)  # where each new pixel was in the old frame
        h, w = grey.shape
        grid_x, grid_y = _grid(h, w)
        warped = cv2.remap(state.grey.astype(np.float32), grid_x + flow[..., 0], grid_y + flow[..., 1],
                           cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=-1.0)
        new = (np.abs(warped - grey) > OCCLUDED_LEVELS) | (warped < 0)
        if new.mean() > LOST_SHARE:
            return None
        big_h, big_w = shape
        scale_x, scale_y = big_w / w, big_h / h
        flow_big = cv2.resize(flow, (big_w, big_h), interpolation=cv2.INTER_LINEAR)
        xs, ys = _grid(big_h, big_w)
        map_x, map_y = xs + flow_big[..., 0] * scale_x, ys + flow_big[..., 1] * scale_y
        labels = cv2.remap(state.labels, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
        support = cv2.remap(state.support, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=0.0)
        new_big = cv2.resize(new.astype(np.uint8), (big_w, big_h), interpolation=cv2.INTER_NEAREST).astype(bool)
        return labels, support, new_big


def _update(old_labels, support, new_pixels, labels, confidence):
    confidence = confidence.astype(np.float32, copy=False)
    agree = old_labels == labels
    wins = ~agree & (confidence > support) | new_pixels
    out_labels = np.where(wins, labels, old_labels)
    out_support = np.where(agree, np.maximum(confidence, support),
                           np.where(wins, confidence, support * np.float32(DECAY)))
    return out_labels.astype(labels.dtype, copy=False), out_support.astype(np.float32, copy=False)


@functools.lru_cache(maxsize=8)
def _grid(height, width):
    return np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))


def _small_grey(frame, shape):
    """The frame as a grey image about FLOW_WIDTH across, in the aspect of the labels' ``shape``."""
    h, w = shape
    width = min(FLOW_WIDTH, w)
    height = max(1, round(h * width / w))
    grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)
