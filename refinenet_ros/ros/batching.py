"""Newest-frame-per-camera slots feeding the inference thread (no ROS imports).

Each camera has one slot: a new frame replaces the pending one (counted as dropped), so memory
and latency stay bounded however fast the cameras publish. The inference thread takes up to
``max_batch_size`` pending frames across cameras, waiting at most ``timeout`` after the first
one for the other active cameras (those that sent a frame within ``ACTIVE_WINDOW_S``) to fill
the batch: a stalled camera does not delay the others.

Fairness: pending cameras are served round robin, starting after the camera served last, so
no camera is served twice while another pending camera waits. Under any overload each active
camera gets its share of the throughput, whatever order or rate the cameras publish in.

Fresh frames: when the only pending frame has already waited ``STALE_FRACTION`` of its camera's
frame period and that camera's next frame is due, take() waits for the next frame instead (up
to half a period late, then takes the old one). A label made from a frame that sat in its slot is
old the moment it is published; waiting gives younger labels on average whenever segmenting takes
longer than the camera period, and spends no cycles on the stale frame (docs/node.md).
"""
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field

ACTIVE_WINDOW_S = 1.0
STALE_FRACTION = 0.4  # of the camera period: the age-optimal threshold in docs/performance.md
PERIOD_SAMPLES = 16   # arrival intervals per camera behind its period (median)


@dataclass
class PendingFrame:
    camera: int
    message: object       # the frame as received: serialised bytes (a raw subscription) or a message
    message_type: type = None  # the message class of serialised bytes, else None
    received: float = field(default_factory=time.monotonic)


class FrameSlots:
    def __init__(self, num_cameras):
        self._slots = [None] * num_cameras
        self._dropped = [0] * num_cameras
        self._last_put = [float("-inf")] * num_cameras
        self._intervals = [deque(maxlen=PERIOD_SAMPLES) for _ in range(num_cameras)]
        self._passed_over = [0] * num_cameras  # stale frames replaced while take() waited
        self._next = 0  # round robin: the first camera to consider at the next take()
        self._condition = threading.Condition()
        self._closed = False

    def put(self, frame):
        """Store ``frame`` as its camera's pending frame; returns True if it replaced one."""
        with self._condition:
            replaced = self._slots[frame.camera] is not None
            if replaced:
                self._dropped[frame.camera] += 1
            self._slots[frame.camera] = frame
            interval = frame.received - self._last_put[frame.camera]
            if 0 < interval <= ACTIVE_WINDOW_S:
                self._intervals[frame.camera].append(interval)
            self._last_put[frame.camera] = frame.received
            self._condition.notify()
        return replaced

    def discard(self, camera):
        """Drop ``camera``'s pending frame (nobody subscribes to its outputs any more)."""
        with self._condition:
            self._slots[camera] = None
            self._last_put[camera] = float("-inf")
            self._intervals[camera].clear()

    def take(self, max_batch_size, timeout, idle_timeout=0.1, fresh=True):
        """Up to ``max_batch_size`` pending frames, round robin across cameras. Blocks until one is pending
        (returns [] after ``idle_timeout`` or when closed), then waits up to ``timeout`` s for
        the batch to fill with every camera that could still contribute; with ``fresh``, a lone
        stale frame waits for its camera's next one (module docstring)."""
        with self._condition:
            if not self._condition.wait_for(lambda: self._closed or self._pending(), idle_timeout):
                return []
            now = time.monotonic()
            active = sum(now - last <= ACTIVE_WINDOW_S for last in self._last_put)
            wanted = min(max_batch_size, max(active, 1))
            deadline = now + timeout
            while not self._closed and self._pending() < wanted:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            if fresh and not self._closed:
                self._wait_for_fresh_frame()
            if self._closed:
                return []
            count = len(self._slots)
            order = [(self._next + k) % count for k in range(count)]
            frames = [self._slots[c] for c in order if self._slots[c] is not None][:max_batch_size]
            for frame in frames:
                self._slots[frame.camera] = None
            if frames:
                self._next = (frames[-1].camera + 1) % count
            return frames

    def dropped(self):
        with self._condition:
            return list(self._dropped)

    def passed_over(self):
        """Per camera, the stale frames dropped for the camera's next one (part of dropped())."""
        with self._condition:
            return list(self._passed_over)

    def close(self):
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    def _pending(self):
        return sum(frame is not None for frame in self._slots)

    def _wait_for_fresh_frame(self):
        """With one frame pending and stale, wait until its camera's next frame replaces it (or
        another camera's frame arrives); past half a period after it was due, keep the old one."""
        pending = [frame for frame in self._slots if frame is not None]
        if len(pending) != 1:
            return
        stale = pending[0]
        intervals = self._intervals[stale.camera]
        if len(intervals) < intervals.maxlen // 2:
            return  # period not known yet
        period = statistics.median(intervals)
        if time.monotonic() - stale.received < STALE_FRACTION * period:
            return
        deadline = stale.received + 1.5 * period
        while not self._closed and self._slots[stale.camera] is stale and self._pending() == 1:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._condition.wait(remaining)
        if self._slots[stale.camera] is not stale:
            self._passed_over[stale.camera] += 1
