"""The node's work, in two stages: **inference** (take pending frames, convert, segment) on as
many threads as frames may be in flight, and **publishing** (build and publish each camera's
messages) on one. Batches are numbered when taken and published in that order, so a camera's
outputs never go out of order; at most (inference threads + 1) batches are held between taking and
publishing, so memory stays bounded: when publishing falls behind, inference waits.

By device: on CUDA a batch holds up to ``max_batch_size`` frames (one per camera), run as one
forward. On a CPU every engine call takes one frame, as batches only add cost there
(docs/node.md), so the cameras are served one frame at a time, round robin, with publishing
overlapped and, where the backend overlaps calls (OpenVINO), several frames in flight. Which
frames are taken, and how many at once, is the frame intake's (:mod:`.intake`).

The pipeline owns nothing it is given: the node creates its collaborators (frame intake, stats,
segmenter, cameras, a settings getter, the intake mode getter, a problem sink, a stop event) and
their lifetimes.
"""
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .conversions import ImageConversionError, deserialize, frame_to_rgb
from .outputs import needs

_DONE = object()
IDLE_RELEASE_S = 1.0  # without frames this long, memory that large frames left is given back


@dataclass(frozen=True)
class Collaborators:
    intake: object         # intake.FrameIntake: pending frames, one per camera
    stats: object          # diagnostics.NodeStats
    segmenter: object      # engine.Segmenter
    cameras: list          # camera.Camera, by index
    settings: Callable     # () -> params.Settings now in force
    problems: object       # problems.ProblemLog
    stop: threading.Event  # set when the pipeline must stop
    mode: Callable         # () -> intake.IntakeMode in force
    failover: object       # failover.Failover: what happens when the backend fails
    context_ok: Callable = lambda: True  # False once ROS is shutting down
    max_in_flight: int = 1  # inference threads: the most frames in flight it may be asked for


class Pipeline:
    def __init__(self, parts):
        self.parts = parts
        self.processed_frames = [0] * len(parts.cameras)  # per camera, since the pipeline started
        threads = max(1, parts.max_in_flight)
        self.handover = queue.Queue()  # (number, jobs, results, settings), in any order
        self._tickets = threading.Semaphore(threads + 1)  # batches between taking and publishing
        self._in_flight = _Limit(parts.mode().frames_in_flight)
        self._numbering = threading.Lock()
        self._taken = self._published = 0  # batches numbered, and published in that order
        self._last_work, self._release_lock = float("inf"), threading.Lock()  # last frame taken or published
        self.inference = [threading.Thread(target=self._inference_loop, name=f"inference-{i}", daemon=True)
                          for i in range(threads)]
        self.publishing = threading.Thread(target=self._publish_loop, name="publishing", daemon=True)
        for thread in self.inference:
            thread.start()
        self.publishing.start()

    def join(self):
        """After the stop event is set and the intake closed: finish the batches in flight, then
        stop. No timeout: a batch still running must end before the interpreter exits, or the
        runtime's threads abort the process ("terminate called without an active exception")."""
        for thread in self.inference:
            thread.join()
        self.handover.put(_DONE)
        self.publishing.join()

    def set_frames_in_flight(self, count):
        """Segment at most ``count`` frames at once from now on (up to the inference threads)."""
        self._in_flight.set(count)

    # -- inference threads --------------------------------------------------------------
    def _inference_loop(self):
        while not self.parts.stop.is_set():
            if not self._in_flight.acquire(timeout=0.1):
                continue
            try:
                self._one_batch()
            finally:
                self._in_flight.release()

    def _one_batch(self):
        """Take frames (one per camera at most), segment them and hand them to publishing."""
        parts = self.parts
        if not self._tickets.acquire(timeout=0.1):
            return
        settings = parts.settings()
        batch = parts.failover.batch_size(settings.max_batch_size) if parts.segmenter.device.type == "cuda" else 1
        with self._numbering:  # numbers follow the order in which frames leave their slots
            frames = parts.intake.take(batch, settings.batch_timeout_s, parts.mode().wait_for_next_frame)
            number = self._taken
            self._taken += bool(frames)
        if not frames:
            self._tickets.release()
            self._idle()
            return
        self._last_work = time.monotonic()
        settings = parts.settings()  # the settings now in force, after the wait
        jobs, results = [], []
        try:
            jobs, results = self._infer(frames, settings)
        finally:  # even an empty batch has its number published, or publishing would wait on it
            self.handover.put((number, jobs, results, settings))

    def _idle(self):
        """No frame pending: a second after the last frame was taken and the last batch published
        (nothing of a large frame is referenced any more), give back what large frames left."""
        idle = self._published == self._taken and time.monotonic() - self._last_work > IDLE_RELEASE_S
        if idle and self._release_lock.acquire(blocking=False):
            try:
                self.parts.segmenter.release_memory()
                self._last_work = float("inf")  # once per idle period
            finally:
                self._release_lock.release()

    def _infer(self, frames, settings):
        parts, jobs = self.parts, []  # (frame, wanted outputs, RGB image)
        for frame in frames:
            outputs = parts.cameras[frame.camera].wanted_outputs(settings)  # subscribers may have left
            if not outputs:
                parts.intake.store.count(frame.camera, "no_subscribers")
                continue
            started = time.perf_counter()
            try:
                jobs.append((frame, outputs, _frame_rgb(frame)))
            except (ImageConversionError, ValueError, TypeError) as exc:
                parts.problems.bad_frame(parts.cameras[frame.camera], str(exc), "conversion")
            parts.stats.stage("convert", (time.perf_counter() - started) * 1000.0)
        results, error = self._segment(jobs, settings)
        batch_error = error
        if len(jobs) > 1 and results is None:  # one camera's frame broke the batch: retry singly
            singles = [(job, self._segment([job], settings)) for job in jobs]
            jobs = [job for job, (result, _) in singles if result is not None]
            results = [result[0] for _, (result, _) in singles if result is not None]
            error = next((e for _, (_, e) in singles if e is not None), None) if not results else None
        if results:
            parts.failover.succeeded()
        elif error is not None and not parts.stop.is_set():
            parts.failover.failed(batch_error if batch_error is not None else error, len(frames))
        return (jobs, results) if results else ([], [])

    def _segment(self, jobs, settings):
        """(results for ``jobs``, None), or (None, the error) when the model failed (counted for a
        lone frame's camera)."""
        if not jobs:
            return None, None
        parts = self.parts
        frames, outputs, images = zip(*jobs)
        start = time.perf_counter()
        try:
            if parts.segmenter.temporal_filter != settings.temporal_filter:  # switched at run time
                parts.segmenter.temporal_filter = settings.temporal_filter
            results = parts.segmenter.segment(
                images, output_resolution=settings.output_resolution, input_size=settings.input_size,
                max_pixels=settings.max_input_pixels, cameras=[frame.camera for frame in frames],
                times=[_stamp(frame.message) for frame in frames],
                with_confidence=any(needs(o, "confidence") for o in outputs),
                with_color=any(needs(o, "color") for o in outputs),
                overlay_alpha=settings.overlay_alpha if any(needs(o, "overlay") for o in outputs) else None)
        except Exception as exc:  # noqa: BLE001 - keep serving; reported per camera on /diagnostics
            if parts.stop.is_set() or not parts.context_ok():
                return None, None
            reason = f"inference failed: {type(exc).__name__}: {exc}"
            parts.problems.inference_failed(reason)
            if len(jobs) == 1:
                parts.problems.bad_frame(parts.cameras[frames[0].camera], reason, "inference")
            return None, exc
        parts.stats.batch(len(frames), (time.perf_counter() - start) * 1000.0)
        for stage, ms in parts.segmenter.last_timings.items():
            parts.stats.stage(stage, ms)
        return results, None

    # -- publishing thread --------------------------------------------------------------
    def _publish_loop(self):
        waiting, next_number = {}, 0  # batches that finished before an earlier one
        while (item := self.handover.get()) is not _DONE:
            waiting[item[0]] = item[1:]
            item = None  # a waiting loop must not hold the last frame and its outputs (a 4K frame's)
            while next_number in waiting:
                self._publish(*waiting.pop(next_number))
                next_number += 1
                self._published, self._last_work = next_number, time.monotonic()
                self._tickets.release()
        for number in sorted(waiting):  # stopping: every inference thread has ended
            self._publish(*waiting.pop(number))

    def _publish(self, jobs, results, settings):
        parts = self.parts
        for (frame, outputs, _), result in zip(jobs, results):
            camera = parts.cameras[frame.camera]
            started = time.perf_counter()
            try:
                cloud_problem = camera.publish(frame.message, result, outputs, settings)
            except Exception as exc:  # noqa: BLE001 - e.g. a camera_info that cannot be scaled
                parts.problems.bad_frame(camera, f"{type(exc).__name__}: {exc}", "publishing")
                continue
            parts.stats.stage("publish", (time.perf_counter() - started) * 1000.0)
            if cloud_problem:  # the frame's other outputs went out
                parts.problems.log(camera, "point cloud", f"no point cloud: {cloud_problem}", warning=True)
            parts.stats.published(frame.camera, frame.received)
            self.processed_frames[frame.camera] += 1


class _Limit:
    """At most ``count`` holders at once; the count can change while in use."""

    def __init__(self, count):
        self.count, self.busy = count, 0
        self._condition = threading.Condition()

    def acquire(self, timeout):
        with self._condition:
            if not self._condition.wait_for(lambda: self.busy < self.count, timeout):
                return False
            self.busy += 1
            return True

    def release(self):
        with self._condition:
            self.busy -= 1
            self._condition.notify_all()

    def set(self, count):
        with self._condition:
            self.count = count
            self._condition.notify_all()


def _stamp(message):
    """A frame's header stamp in seconds (the temporal filter's clock: a camera that restarts, or a
    bag replayed again, goes back in time)."""
    return message.header.stamp.sec + message.header.stamp.nanosec * 1e-9


def _frame_rgb(frame):
    """The network's RGB input for a pending frame, deserialised and decoded only now that it runs
    (its message, header included, is kept for publishing)."""
    if frame.message_type is not None:
        frame.message, frame.message_type = deserialize(frame.message, frame.message_type), None
    return frame_to_rgb(frame.message)
