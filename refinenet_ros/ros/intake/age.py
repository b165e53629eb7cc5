"""How fresh the node's labels are. A navigation stack acts on the newest label it holds, so the
figure that counts is that label's age - the time since its frame was received - averaged over
time: latency plus the wait for the next label."""
import threading
import time


class LabelAge:
    """Time-weighted age of each camera's newest published label since :meth:`reset`."""

    def __init__(self, cameras, clock=time.monotonic):
        self._clock, self._lock = clock, threading.Lock()
        self._newest = [None] * cameras  # received time of the newest label
        self.reset()

    def reset(self):
        with self._lock:
            now = self._clock()
            self._updated = [now] * len(self._newest)
            self._since = [None if newest is None else now for newest in self._newest]  # measured from
            self._area = [0.0] * len(self._newest)
            self._labels = [0] * len(self._newest)

    def published(self, camera, received_at):
        with self._lock:
            now = self._clock()
            self._advance(camera, now)
            if self._since[camera] is None:
                self._since[camera] = now
            newest = self._newest[camera]
            self._newest[camera] = received_at if newest is None else max(newest, received_at)
            self._labels[camera] += 1

    def ages_ms(self):
        """Per camera: the time-weighted age in ms since reset, or None before its first label."""
        with self._lock:
            now = self._clock()
            ages = []
            for camera, since in enumerate(self._since):
                self._advance(camera, now)
                ages.append(None if since is None or now <= since else 1000.0 * self._area[camera] / (now - since))
            return ages

    def labels(self):
        with self._lock:
            return list(self._labels)

    def mean_ms(self):
        """The cameras' time-weighted ages averaged, or None before any label."""
        ages = [age for age in self.ages_ms() if age is not None]
        return sum(ages) / len(ages) if ages else None

    def _advance(self, camera, now):
        newest, start = self._newest[camera], self._updated[camera]
        if newest is not None and now > start:  # the age grows linearly from start to now
            self._area[camera] += (now - start) * ((start - newest) + (now - newest)) / 2.0
        self._updated[camera] = now


def mean_age_ms(events):
    """The time-weighted age of the newest label between the first and the last of ``events``:
    (arrival time s, that label's age on arrival s), in arrival order. None below two labels."""
    events = list(events)
    if len(events) < 2 or events[-1][0] <= events[0][0]:
        return None
    area = sum((later - t) * (age + (later - t) / 2.0) for (t, age), (later, _) in zip(events, events[1:]))
    return 1000.0 * area / (events[-1][0] - events[0][0])
