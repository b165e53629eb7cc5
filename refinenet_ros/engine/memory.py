"""Giving memory back after an unusually large frame (a 4K image among VGA ones): ONNX Runtime's
arena and the C heap otherwise keep their peak for the life of the process (docs/node.md)."""
import ctypes
import ctypes.util
import statistics
import threading
from collections import deque


class SpikeDetector:
    """``is_spike(size)``: True when ``size`` exceeds ``factor`` x the median of the recent sizes."""

    def __init__(self, factor=2.0, history=32):
        self.factor, self.sizes = factor, deque(maxlen=history)
        self._lock = threading.Lock()  # callers on several threads

    def is_spike(self, size):
        with self._lock:
            spike = len(self.sizes) >= 2 and size > self.factor * statistics.median(self.sizes)
            self.sizes.append(size)
        return spike


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
