"""How fresh the node's labels are, and the way of taking frames that keeps them freshest.

A navigation stack acts on the newest label it holds, so the figure that counts is that label's
age - the time since its frame was received - averaged over time: latency plus the wait for the
next label. :class:`LabelAge` measures it per camera. :class:`FramesInFlight` chooses how the
node takes frames - how many it segments at once, and whether a lone stale frame is skipped for
the camera's next one - by that figure, measured on the live cameras (docs/node.md, "Frames in
flight"). No ROS imports.
"""
import os
import threading
import time
from typing import NamedTuple

AUTO_IN_FLIGHT = (1, 2)  # what inference_streams 0 tries, where the backend overlaps calls
# Two in flight give younger labels than one only above this frames/s gain (docs/node.md): the
# count to start with, before the live trial has measured both.
AGE_BREAK_EVEN_GAIN = 5 / 3


class Mode(NamedTuple):
    """How the pipeline takes frames: ``in_flight`` frames segmented at once; with
    ``skip_stale``, a lone frame that has waited too long is passed over for its camera's next
    one (batching.FrameSlots)."""
    in_flight: int
    skip_stale: bool

    def __str__(self):
        return f"{self.in_flight}, stale frames {'skipped' if self.skip_stale else 'segmented'}"


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


class FramesInFlight:
    """How frames are taken (a :class:`Mode`, or any ordered value), chosen by label age on the
    live cameras.

    With several ``candidates`` (:func:`trial_modes`), each runs ``settle_s`` to take effect and
    ``measure_s`` to be measured, and the one with the youngest labels is kept; the trial runs
    again when the input rate has changed by more than ``RATE_CHANGE`` x for ``CHANGE_HELD_S``.
    :meth:`tick` runs on the node's timer; ``apply(candidate)`` puts a candidate in force; ``log``
    gets the line that states each choice with its figures.
    """

    RATE_CHANGE = 1.5
    # a camera that pauses and resumes passes through a changed rate while the node's rate window
    # empties and refills (docs/node.md); only a change that holds is a new load
    CHANGE_HELD_S = 3.0

    def __init__(self, candidates, apply, age, input_rate, log=print, settle_s=2.0, measure_s=4.0,
                 clock=time.monotonic):
        self.candidates, self._apply, self._age, self._input_rate = list(candidates), apply, age, input_rate
        self._log = log
        self.settle_s, self.measure_s, self._clock = settle_s, measure_s, clock
        self.current = self.candidates[0]
        self.figures = {}  # candidate -> ms of the last trial
        self._trial, self._phase_end, self._decided_rate = None, None, None
        self._changed_since = None

    @property
    def note(self):
        """For /diagnostics: the count in force, and how it was chosen."""
        if len(self.candidates) < 2:
            return f"{self.current} (fixed)"
        if self._trial is not None:
            return f"{self.current} (trying {'; '.join(map(str, self.candidates))} on the live cameras)"
        if not self.figures:
            return f"{self.current} (no frames yet)"
        figures = "; ".join(f"{c}: {ms:.0f} ms" for c, ms in sorted(self.figures.items()) if ms is not None)
        return f"{self.current} (youngest labels: {figures})"

    def tick(self):
        """Advance the trial; the line that states a choice is logged, and returned."""
        if len(self.candidates) < 2:
            return None
        now, rate = self._clock(), self._input_rate()
        if self._trial is None:
            if self._rate_changed(now, rate):
                self._start_trial(now)
            return None
        if now < self._phase_end:
            return None
        candidate, measuring = self._trial[0], self._trial[1]
        if not measuring:  # settled: measure from now on
            self._age.reset()
            self._trial, self._phase_end = (candidate, True, self._trial[2]), now + self.measure_s
            return None
        self.figures[candidate] = self._age.mean_ms()
        rest = self._trial[2]
        if rest:
            self._switch(rest[0], rest[1:], now)
            return None
        return self._decide(rate)

    def _rate_changed(self, now, rate):
        """Whether to try again: frames flow for the first time, or the input rate has differed
        from the one last decided at by over RATE_CHANGE x for CHANGE_HELD_S."""
        if self._decided_rate is None:
            return rate > 0
        if rate <= 0 or not _changed(rate, self._decided_rate, self.RATE_CHANGE):
            self._changed_since = None
            return False
        if self._changed_since is None:
            self._changed_since = now
        return now - self._changed_since >= self.CHANGE_HELD_S

    def _start_trial(self, now):
        self.figures, self._changed_since = {}, None
        self._switch(self.candidates[0], self.candidates[1:], now)

    def _switch(self, candidate, rest, now):
        self.current = candidate
        self._apply(candidate)
        self._trial, self._phase_end = (candidate, False, list(rest)), now + self.settle_s

    def _decide(self, rate):
        measured = {c: ms for c, ms in self.figures.items() if ms is not None}
        best = min(measured, key=lambda c: (measured[c], c)) if measured else self.candidates[0]
        self._trial, self._decided_rate = None, rate
        if best != self.current:
            self.current = best
            self._apply(best)
        figures = "; ".join(f"{c}: {ms:.0f} ms" for c, ms in sorted(measured.items()))
        line = (f"frames in flight: {best} (the youngest labels on the live cameras; time-weighted age "
                f"of the newest label with {figures}; input {rate:.1f} frames/s)")
        self._log(line)
        return line


def _changed(rate, reference, factor):
    return rate > factor * reference or rate * factor < reference


def mean_age_ms(events):
    """The time-weighted age of the newest label between the first and the last of ``events``:
    (arrival time s, that label's age on arrival s), in arrival order. None below two labels."""
    events = list(events)
    if len(events) < 2 or events[-1][0] <= events[0][0]:
        return None
    area = sum((later - t) * (age + (later - t) / 2.0) for (t, age), (later, _) in zip(events, events[1:]))
    return 1000.0 * area / (events[-1][0] - events[0][0])


def streams_refused(requested, segmenter):
    """Why ``inference_streams`` = ``requested`` cannot be honoured by ``segmenter``, or None."""
    if requested >= 2 and not segmenter.overlaps:
        return (f"inference_streams {requested}: the {segmenter.backend} backend runs one call at a time "
                f"(only openvino runs several); set 0 (auto) or 1, or backend openvino")
    return None


def streams_gain(segmenter):
    """Frames/s of two calls at once over one, as the start-up measurement found, or None."""
    return getattr(getattr(segmenter.network, "plan", None), "streams_gain", None)


def in_flight_candidates(requested, segmenter, cores=None):
    """The frames in flight to try: with ``inference_streams`` 0 (auto) on a CPU of two or more
    cores and a backend that overlaps calls, 1 and 2, the one with the younger labels by the
    start-up measurement first (two where they gave over AGE_BREAK_EVEN_GAIN x the frames/s of
    one); else the one there is."""
    cores = len(os.sched_getaffinity(0)) if cores is None else cores
    if requested != 0 or not segmenter.overlaps or segmenter.device.type != "cpu" or cores < 2:
        return [segmenter.streams]
    gain = streams_gain(segmenter)
    first = 2 if gain is not None and gain > AGE_BREAK_EVEN_GAIN else 1
    return sorted(AUTO_IN_FLIGHT, key=lambda n: n != first)


def trial_modes(requested_streams, stale_frames, segmenter, cores=None):
    """The :class:`Mode` s to try, the one to start with first: every frames-in-flight candidate
    with stale frames skipped and, where ``stale_frames`` is auto, segmented too (skipping is
    what the simple model of docs/node.md prefers; some CPUs segment a frame slower after idling,
    which only the live trial sees)."""
    skips = (True, False) if stale_frames == "auto" else (stale_frames == "skip",)
    return [Mode(count, skip) for count in in_flight_candidates(requested_streams, segmenter, cores)
            for skip in skips]
