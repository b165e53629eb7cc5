"""When each camera's frames arrive: its period (the median of its recent intervals), whether it is
active, and the input rate of all cameras - the one estimator that the wait for the next frame, the
batching and the live trial read."""
import statistics
import threading
import time
from collections import deque

ACTIVE_WINDOW_S = 1.0  # a camera that sent a frame this recently may still fill a batch
PERIOD_SAMPLES = 16    # arrival intervals per camera behind its period
RATE_WINDOW_S = 3.0    # the input rate the live trial watches
MAX_ARRIVALS = 4096


class Arrivals:
    def __init__(self, cameras, clock=time.monotonic):
        self._clock, self._lock = clock, threading.Lock()
        self._last = [float("-inf")] * cameras
        self._intervals = [deque(maxlen=PERIOD_SAMPLES) for _ in range(cameras)]
        self._times = deque(maxlen=MAX_ARRIVALS)  # every camera's, for the input rate

    def arrived(self, camera, at):
        with self._lock:
            interval = at - self._last[camera]
            if 0 < interval <= ACTIVE_WINDOW_S:
                self._intervals[camera].append(interval)
            self._last[camera] = at
            self._times.append(at)

    def forget(self, camera):
        """``camera`` stopped counting (nobody subscribes to it): no period, not active."""
        with self._lock:
            self._last[camera] = float("-inf")
            self._intervals[camera].clear()

    def period(self, camera):
        """The camera's frame period in s, or None until half of PERIOD_SAMPLES intervals are known."""
        with self._lock:
            intervals = self._intervals[camera]
            return statistics.median(intervals) if len(intervals) >= PERIOD_SAMPLES // 2 else None

    def active(self, now=None):
        """How many cameras sent a frame within ACTIVE_WINDOW_S."""
        now = self._clock() if now is None else now
        with self._lock:
            return sum(now - last <= ACTIVE_WINDOW_S for last in self._last)

    def rate(self, now=None):
        """Frames per second of all cameras over the last RATE_WINDOW_S."""
        now = self._clock() if now is None else now
        with self._lock:
            return sum(t >= now - RATE_WINDOW_S for t in self._times) / RATE_WINDOW_S
