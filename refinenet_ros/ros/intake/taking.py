"""The frame intake the node and its pipeline use: frames put as they arrive, taken in batches by
the rules of :mod:`.rules`, under the store's one lock.

Fairness: pending cameras are served round robin, starting after the camera served last, so under
any overload each active camera gets its share of the throughput, whatever order or rate the
cameras publish in. A batch waits at most ``timeout`` after its first frame for the other active
cameras, so a stalled camera does not delay the others.
"""
import time

from .arrivals import Arrivals
from .rules import frames_wanted, is_stale, next_frame_deadline, round_robin
from .store import FrameStore, PendingFrame

__all__ = ["FrameIntake", "PendingFrame"]


class FrameIntake:
    def __init__(self, cameras):
        self.store, self.arrivals = FrameStore(cameras), Arrivals(cameras)
        self._start = 0  # round robin: the first camera to consider at the next take()

    def put(self, frame):
        """A frame that someone wants segmented; returns True if it replaced a pending one."""
        self.arrivals.arrived(frame.camera, frame.received)
        return self.store.put(frame)

    def unwanted(self, camera):
        """A frame of ``camera`` arrived while nobody subscribes to its outputs: dropped, and the
        camera's pending frame too."""
        self.store.count(camera, "no_subscribers")
        self.store.discard(camera)
        self.arrivals.forget(camera)

    def take(self, max_batch_size, timeout, wait_for_next_frame=True, idle_timeout=0.1):
        """Up to ``max_batch_size`` pending frames, round robin across cameras. Blocks until one is
        pending (returns [] after ``idle_timeout`` or when closed), then waits up to ``timeout`` s
        for the batch to fill with every camera that could still contribute; with
        ``wait_for_next_frame``, a lone stale frame waits for its camera's next one."""
        store = self.store
        with store.condition:
            if not store.condition.wait_for(lambda: store.closed or store.pending(), idle_timeout):
                return []
            wanted = frames_wanted(max_batch_size, self.arrivals.active())
            deadline = time.monotonic() + timeout
            while not store.closed and len(store.pending()) < wanted:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                store.condition.wait(remaining)
            if wait_for_next_frame and not store.closed:
                self._wait_for_next_frame()
            if store.closed:
                return []
            frames, self._start = round_robin(store.pending(), len(store.slots), self._start, max_batch_size)
            store.remove(frames)
            return frames

    def _wait_for_next_frame(self):
        """With one frame pending and stale, set it aside until its camera's next frame arrives
        (then it is dropped) or another camera's does, or the next one is late (then it is kept)."""
        store = self.store
        pending = store.pending()
        if len(pending) != 1:
            return
        stale = pending[0]
        period = self.arrivals.period(stale.camera)
        if not is_stale(time.monotonic() - stale.received, period):
            return
        store.remove([stale])
        deadline = next_frame_deadline(stale.received, period)
        while not store.closed and not store.pending():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            store.condition.wait(remaining)
        if store.slots[stale.camera] is not None:
            store.count(stale.camera, "waited_for_next_frame")
        elif store.closed:
            store.count(stale.camera, "stopped")
        else:
            store.slots[stale.camera] = stale

    def dropped(self):
        """{reason: frames dropped per camera} (:data:`.store.DROP_REASONS`)."""
        return self.store.dropped()

    def close(self):
        self.store.close()
