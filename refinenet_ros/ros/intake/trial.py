"""The live trial: how the node takes frames - its :class:`IntakeMode` - chosen by label age on the
live cameras (docs/node.md, "Frame intake").

An explicit state machine, advanced by :meth:`LiveTrial.tick` on the node's timer::

    WAITING --frames flow (>= MIN_RATE for CHANGE_HELD_S)--> SETTLING(mode) --settle_s-->
        MEASURING(mode) --measure_s--> SETTLING(next mode) ... --> DECIDED(best, remembered)
    WAITING --frames flow, a mode remembered for these conditions (memory.py)--> DECIDED(that mode)
    DECIDED --the input rate changed RATE_CHANGE x for CHANGE_HELD_S, or the labels were over
        AGE_TOLERANCE x older than the decided figure for WATCH_S at a steady rate--> SETTLING(first)

Each mode settles ``settle_s`` (its effect reaches the labels), then is measured ``measure_s``; the
one with the youngest labels is kept. The trial's ``mode`` is the one place the mode in force is
held (the first of ``modes`` until the trial runs: the engine's own decision, already in force);
``apply(mode)`` puts a change in force in the pipeline and the engine.
"""
import enum
import time
from typing import NamedTuple

from ...engine.planning.streams import trial_counts


class IntakeMode(NamedTuple):
    """``frames_in_flight`` frames segmented at once; with ``wait_for_next_frame``, a lone stale
    frame is passed over for its camera's next one (:mod:`.rules`)."""
    frames_in_flight: int
    wait_for_next_frame: bool

    def __str__(self):
        return f"{self.frames_in_flight}, {'waiting for' if self.wait_for_next_frame else 'not waiting for'} " \
               f"the next frame"


def trial_modes(requested_in_flight, wait_for_next_frame, segmenter, cores=None):
    """The modes to try, the one to start with first: every frames-in-flight count the engine's
    one decision allows (:func:`..planning.streams.trial_counts`), waiting for the next frame and,
    where ``wait_for_next_frame`` is auto, not waiting too (waiting is what the simple model of
    docs/node.md prefers; some CPUs segment a frame slower after idling, which only the live trial
    sees)."""
    waits = (True, False) if wait_for_next_frame == "auto" else (wait_for_next_frame == "always",)
    counts = trial_counts(requested_in_flight, segmenter.network.spec, segmenter.device.type,
                          segmenter.plan.streams, cores)
    return [IntakeMode(count, wait) for count in counts for wait in waits]


class TrialState(enum.Enum):
    WAITING = "waiting for frames"
    SETTLING = "settling"
    MEASURING = "measuring"
    DECIDED = "decided"


class LiveTrial:
    RATE_CHANGE = 1.5
    # a camera that pauses and resumes passes through a changed rate while the rate window empties
    # and refills (docs/node.md); only a change that holds is a new load
    CHANGE_HELD_S = 3.0
    MIN_RATE = 1.0        # frames/s below which nothing is tried (ages would be the camera's gaps)
    AGE_TOLERANCE, WATCH_S = 1.25, 10.0

    def __init__(self, modes, apply, age, input_rate, log=print, settle_s=2.0, measure_s=4.0,
                 clock=time.monotonic, memory=None):
        self.modes, self._apply, self._age, self._input_rate = list(modes), apply, age, input_rate
        self._log, self._clock, self._memory = log, clock, memory
        self._expected_ms, self._watch = None, None  # the decided figure; (since, lowest rate)
        self.remembered = False  # the mode in force was recalled, not tried
        self._flowing_since = None  # since when frames come at MIN_RATE or more
        self.settle_s, self.measure_s = settle_s, measure_s
        self.mode = self.modes[0]
        self.state = TrialState.WAITING if len(self.modes) > 1 else TrialState.DECIDED
        self.figures = {}  # mode -> ms of the last trial
        self._queue, self._phase_end, self._decided_rate, self._changed_since = [], None, None, None

    @property
    def note(self):
        """For /diagnostics: the mode in force, and how it was chosen."""
        if len(self.modes) < 2:
            return f"{self.mode} (fixed)"
        if self.state in (TrialState.SETTLING, TrialState.MEASURING):
            return f"{self.mode} (trying {'; '.join(map(str, self.modes))} on the live cameras)"
        if not self.figures:
            return f"{self.mode} (no frames yet)"
        figures = "; ".join(f"{m}: {ms:.0f} ms" for m, ms in sorted(self.figures.items()) if ms is not None)
        remembered = "remembered from an earlier start; " if self.remembered else ""
        return f"{self.mode} ({remembered}youngest labels: {figures})"

    def tick(self):
        """Advance the state machine; the line that states a decision is logged, and returned."""
        now, rate = self._clock(), self._input_rate()
        if self.state in (TrialState.WAITING, TrialState.DECIDED):
            if len(self.modes) < 2 or (self.state is TrialState.WAITING and not self._flowing(now, rate)):
                return None
            if self.state is TrialState.WAITING and self._memory is not None:
                recalled = self._memory.recall(rate)
                if recalled is not None:
                    return self._adopt(*recalled, rate, now)
            if self._rate_changed(now, rate) or self._labels_too_old(now, rate):
                self.figures, self._changed_since = {}, None
                self._settle(self.modes[0], self.modes[1:], now)
            return None
        if now < self._phase_end:
            return None
        if self.state is TrialState.SETTLING:
            self._age.reset()
            self.state, self._phase_end = TrialState.MEASURING, now + self.measure_s
            return None
        self.figures[self.mode] = self._age.mean_ms()
        if self._queue:
            self._settle(self._queue[0], self._queue[1:], now)
            return None
        return self._decide(rate)

    def _flowing(self, now, rate):
        """Whether frames have come at MIN_RATE or more for CHANGE_HELD_S: the input rate's window
        is full, so its band (what a remembered choice is filed under) is the camera's."""
        if rate < self.MIN_RATE:
            self._flowing_since = None
            return False
        self._flowing_since = now if self._flowing_since is None else self._flowing_since
        return now - self._flowing_since >= self.CHANGE_HELD_S

    def _rate_changed(self, now, rate):
        """Whether to try (again): frames flow for the first time, or the input rate has differed
        from the one last decided at by over RATE_CHANGE x for CHANGE_HELD_S."""
        if self._decided_rate is None:
            return rate >= self.MIN_RATE
        if rate < self.MIN_RATE or not _changed(rate, self._decided_rate, self.RATE_CHANGE):
            self._changed_since = None
            return False
        if self._changed_since is None:
            self._changed_since = now
        return now - self._changed_since >= self.CHANGE_HELD_S

    def _labels_too_old(self, now, rate):
        """Whether labels have been over AGE_TOLERANCE x older than the expected figure for
        WATCH_S, the input rate steady (within RATE_CHANGE of the decided one) all along. The
        expected figure is the steady state's: a trial's winner was measured in a short window and
        chosen for being the lowest, so the first window after a trial measures it (and it is what
        is remembered); a remembered mode brings its own."""
        if self.state is not TrialState.DECIDED or self._decided_rate is None:
            return False
        if self._watch is None:
            self._age.reset()
            self._watch = (now, rate)
            return False
        since, lowest = self._watch[0], min(self._watch[1], rate)
        self._watch = (since, lowest)
        if now - since < self.WATCH_S:
            return False
        self._watch = None
        live = self._age.mean_ms()
        steady = lowest >= max(self.MIN_RATE, self._decided_rate / self.RATE_CHANGE)
        if not steady or live is None:
            return False
        if self._expected_ms is None:  # the first steady window after a trial: the figure to keep
            self._expected_ms = live
            if self._memory is not None:
                self._memory.remember(self._decided_rate, self.mode, live)
            return False
        if live > self.AGE_TOLERANCE * self._expected_ms:
            self._log(f"labels {live:.0f} ms old against {self._expected_ms:.0f} ms when {self.mode} was "
                      f"chosen: trying the modes again")
            return True
        return False

    def _adopt(self, mode, age_ms, rate, now):
        self.state, self._decided_rate, self._expected_ms, self._watch = TrialState.DECIDED, rate, age_ms, None
        self.figures, self.remembered = {mode: age_ms}, True
        if mode != self.mode:
            self.mode = mode
            self._apply(mode)
        line = (f"frames in flight: {mode} (remembered from an earlier start under the same conditions: "
                f"{age_ms:.0f} ms; no trial; input {rate:.1f} frames/s)")
        self._log(line)
        return line

    def _settle(self, mode, queue, now):
        self.mode, self._queue, self.remembered = mode, list(queue), False
        self._apply(mode)
        self.state, self._phase_end = TrialState.SETTLING, now + self.settle_s

    def _decide(self, rate):
        measured = {m: ms for m, ms in self.figures.items() if ms is not None}
        best = min(measured, key=lambda m: (measured[m], m)) if measured else self.modes[0]
        self.state, self._decided_rate, self._watch, self._expected_ms = TrialState.DECIDED, rate, None, None
        if best != self.mode:
            self.mode = best
            self._apply(best)
        figures = "; ".join(f"{m}: {ms:.0f} ms" for m, ms in sorted(measured.items()))
        line = (f"frames in flight: {best} (the youngest labels on the live cameras; time-weighted age "
                f"of the newest label with {figures}; input {rate:.1f} frames/s)")
        self._log(line)
        return line


def _changed(rate, reference, factor):
    return rate > factor * reference or rate * factor < reference
