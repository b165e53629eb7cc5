"""Per-camera and per-batch statistics of the segmentation node, reported on /diagnostics.

Counters are written by the subscription callbacks and the inference thread and read by the
diagnostics timer, under one lock; each report covers the period since the previous one and
keeps a bounded number of latency samples, so memory never grows. Label age: :mod:`.intake.age`;
dropped frames, by reason: :mod:`.intake.store`.
"""
import threading
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from .intake.age import LabelAge
from .intake.store import DROP_REASONS

MAX_SAMPLES = 4096  # latency / batch samples kept per period


class _Camera:
    def __init__(self, topic):
        self.topic = topic
        self.received = self.published = self.bad = 0
        self.latencies = deque(maxlen=MAX_SAMPLES)
        self.last_error = ""


class NodeStats:
    def __init__(self, topics):
        self._lock = threading.Lock()
        self._cameras = [_Camera(topic) for topic in topics]
        self._batch_sizes = deque(maxlen=MAX_SAMPLES)
        self._inference_ms = deque(maxlen=MAX_SAMPLES)
        self._stages = {}  # stage -> ms samples: convert, preprocess, model, postprocess, publish
        self._period_start = time.monotonic()
        self.age = LabelAge(len(topics))        # per diagnostics period
        self.trial_age = LabelAge(len(topics))  # for the live trial of the intake mode
        self.last_inference_error = ""

    def received(self, camera):
        with self._lock:
            self._cameras[camera].received += 1

    def bad_frame(self, camera, reason):
        with self._lock:
            self._cameras[camera].bad += 1
            self._cameras[camera].last_error = reason

    def published(self, camera, received_at):
        latency_ms = (time.monotonic() - received_at) * 1000.0
        with self._lock:
            self._cameras[camera].published += 1
            self._cameras[camera].latencies.append(latency_ms)
        self.age.published(camera, received_at)
        self.trial_age.published(camera, received_at)

    def batch(self, size, inference_ms):
        with self._lock:
            self._batch_sizes.append(size)
            self._inference_ms.append(inference_ms)

    def stage(self, name, ms):
        """Time spent in one stage of the pipeline (per frame; per batch for the engine's)."""
        with self._lock:
            self._stages.setdefault(name, deque(maxlen=MAX_SAMPLES)).append(ms)

    def report(self, node_name, dropped, device, precision, arch, backend, state="active", frames_in_flight="1",
               cuda_graphs="off", backend_failure=""):
        """A DiagnosticArray for the period since the last report (and starts a new period);
        ``dropped``: {reason: per camera} since activation (None: no counts yet)."""
        now = time.monotonic()
        with self._lock:
            period = max(now - self._period_start, 1e-6)
            self._period_start = now
            ages = self.age.ages_ms()
            self.age.reset()
            dropped = dropped or {reason: [0] * len(self._cameras) for reason in DROP_REASONS}
            statuses = [self._camera_status(node_name, camera, {r: counts[i] for r, counts in dropped.items()},
                                            period, device, ages[i]) for i, camera in enumerate(self._cameras)]
            batches = list(self._batch_sizes)
            inference = list(self._inference_ms)
            stages = {name: list(samples) for name, samples in self._stages.items()}
            self._batch_sizes.clear()
            self._inference_ms.clear()
            self._stages.clear()
        engine = DiagnosticStatus(name=f"{node_name}: inference", hardware_id=device)
        engine.level = DiagnosticStatus.ERROR if self.last_inference_error else DiagnosticStatus.OK
        engine.message = self.last_inference_error or (
            "running" if batches else "idle (no frames or no subscribers)" if state == "active" else state)
        self.last_inference_error = ""
        engine.values = _values(
            state=state, device=device, precision=precision, backend=backend, arch=arch,
            frames_in_flight=frames_in_flight, cuda_graphs=cuda_graphs, backend_failure=backend_failure or "none",
            batches_per_s=len(batches) / period,
            mean_batch_size=np.mean(batches) if batches else 0.0,
            inference_ms_p50=_percentile(inference, 50), inference_ms_p99=_percentile(inference, 99),
            **{f"stage_ms_{name}_p50": _percentile(samples, 50) for name, samples in stages.items()})
        array = DiagnosticArray(status=statuses + [engine])
        return array

    def _camera_status(self, node_name, camera, dropped, period, device, label_age_ms):
        """``dropped``: {reason: this camera's frames dropped for it since activation}."""
        latencies = list(camera.latencies)
        status = DiagnosticStatus(name=f"{node_name}: {camera.topic}", hardware_id=device)
        if camera.bad:
            status.level = DiagnosticStatus.WARN
            status.message = f"{camera.bad} bad frame(s) skipped: {camera.last_error}"
        else:
            status.level = DiagnosticStatus.OK
            status.message = "ok" if camera.received else "no frames"
        status.values = _values(
            input_fps=camera.received / period, output_fps=camera.published / period,
            dropped_frames_total=sum(dropped.values()),
            **{f"dropped_{reason}_total": count for reason, count in dropped.items()}, bad_frames=camera.bad,
            label_age_ms=float(label_age_ms) if label_age_ms is not None else "none yet",
            latency_ms_p50=_percentile(latencies, 50), latency_ms_p90=_percentile(latencies, 90),
            latency_ms_p99=_percentile(latencies, 99))
        camera.received = camera.published = camera.bad = 0
        camera.latencies.clear()
        return status


def unconfigured_report(node_name, state):
    """The report of a node without a model: only its lifecycle state."""
    return DiagnosticArray(status=[DiagnosticStatus(
        name=f"{node_name}: inference", level=DiagnosticStatus.OK, message=f"{state}: no model loaded",
        values=[KeyValue(key="state", value=state)])])


def _percentile(samples, q):
    return float(np.percentile(samples, q)) if samples else 0.0


def _values(**values):
    return [KeyValue(key=key, value=f"{value:.2f}" if isinstance(value, float) else str(value))
            for key, value in values.items()]
