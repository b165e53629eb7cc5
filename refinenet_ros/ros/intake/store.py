"""Pending frames, one slot per camera: a newer frame replaces the pending one, so memory and
latency stay bounded however fast the cameras publish. Every frame that leaves without being
segmented is counted here once, with its reason (:data:`DROP_REASONS`). It only stores: what to take
and when is decided by :mod:`.taking`, under this store's lock."""
import threading
import time
from dataclasses import dataclass, field

# Why a frame was not segmented: a newer frame of its camera replaced it; it had gone stale and the
# camera's next frame was segmented instead; nobody subscribed to its camera's outputs any more;
# the node stopped (deactivated) with it pending.
DROP_REASONS = ("replaced", "waited_for_next_frame", "no_subscribers", "stopped")


@dataclass
class PendingFrame:
    camera: int
    message: object       # the frame as received: serialised bytes (a raw subscription) or a message
    message_type: type = None  # the message class of serialised bytes, else None
    received: float = field(default_factory=time.monotonic)


class FrameStore:
    def __init__(self, cameras):
        self.slots = [None] * cameras
        self.condition = threading.Condition()  # guards everything here; notified on every put
        self.closed = False
        self._dropped = {reason: [0] * cameras for reason in DROP_REASONS}

    def put(self, frame):
        """Store ``frame`` as its camera's pending frame; returns True if it replaced one."""
        with self.condition:
            replaced = self.slots[frame.camera] is not None
            if replaced:
                self.count(frame.camera, "replaced")
            self.slots[frame.camera] = frame
            self.condition.notify()
        return replaced

    def count(self, camera, reason):
        """One frame of ``camera`` dropped for ``reason`` (callers outside hold no lock)."""
        with self.condition:
            self._dropped[reason][camera] += 1

    def discard(self, camera):
        """Nobody subscribes to ``camera``'s outputs any more: its pending frame goes."""
        with self.condition:
            if self.slots[camera] is not None:
                self.slots[camera] = None
                self.count(camera, "no_subscribers")

    def pending(self):
        """The pending frames, by camera (the caller holds ``condition``)."""
        return [frame for frame in self.slots if frame is not None]

    def remove(self, frames):
        """Take ``frames`` out of their slots (the caller holds ``condition``)."""
        for frame in frames:
            self.slots[frame.camera] = None

    def close(self):
        with self.condition:
            self.closed = True
            for frame in self.pending():
                self.count(frame.camera, "stopped")
            self.slots = [None] * len(self.slots)
            self.condition.notify_all()

    def dropped(self):
        """{reason: frames dropped per camera} since the store was made."""
        with self.condition:
            return {reason: list(counts) for reason, counts in self._dropped.items()}
