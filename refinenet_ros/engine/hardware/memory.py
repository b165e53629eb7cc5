"""Giving memory back after an unusually large frame (a 4K image among VGA ones): ONNX Runtime's
arena, OpenVINO's compiled graphs and the C heap otherwise keep their peak for the life of the
process (docs/node.md). One :class:`MemoryGuard` per Segmenter watches the frames; the network is
told what it says of each call (``memory=SPIKE`` or ``RELEASE``) and asked to release when idle."""
import ctypes
import ctypes.util
import statistics
import threading
from collections import deque


# 256 MB of float32 scores: the most upsampled class maps held at once; above it the top class is
# taken one class at a time (processing/upsample.py), and whole-frame graphs are not used.
MAX_SCORE_ELEMENTS = 1 << 26
SPIKE, RELEASE = "spike", "release"
SPIKE_FACTOR = 2.0  # a call this many times the median of recent ones is a spike


class MemoryGuard:
    """``observe(size)`` of each call: SPIKE when ``size`` exceeds ``factor`` x the median of
    the recent sizes (keep nothing made for it), RELEASE for the first call of ordinary size after
    larger ones that were kept (give back what they left: the first frame may be the big one, or
    several big ones in a row may have become the median), else None."""

    def __init__(self, factor=SPIKE_FACTOR, history=32):
        self.factor, self.sizes = factor, deque(maxlen=history)
        self._largest = 0  # since the last release
        self._lock = threading.Lock()  # callers on several threads

    def observe(self, size):
        with self._lock:
            spike = bool(self.sizes) and size > self.factor * statistics.median(self.sizes)
            release = not spike and self._largest > self.factor * size
            self._largest = size if release else max(self._largest, size)
            self.sizes.append(size)
        return SPIKE if spike else RELEASE if release else None

    def idle_release_due(self):
        """At an idle moment: whether calls much larger than the smallest recent one may hold
        memory since the last release (counted as released from now on)."""
        with self._lock:
            smallest = min(self.sizes, default=0)
            due = bool(self.sizes) and self._largest > self.factor * smallest
            if due:
                self._largest = smallest
            return due


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def trim_heap():
    """Return freed C-heap pages to the system (glibc's malloc_trim; a no-op elsewhere)."""
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)
