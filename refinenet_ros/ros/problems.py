"""Where the node's per-camera problems go: counted on /diagnostics and logged, throttled per
camera and kind, with user-controlled text cut short. The pipeline reports through this sink."""
import time

from .conversions import shorten

ERROR_LOG_PERIOD_S = 5.0


class ProblemLog:
    def __init__(self, logger, stats):
        self._logger, self._stats = logger, stats
        self._logged = {}  # (camera index, kind of problem) -> monotonic time of the last log

    def bad_frame(self, camera, reason, kind="bad frame"):
        """Count a skipped frame for ``camera`` and log it (throttled)."""
        reason = shorten(reason)
        self._stats.bad_frame(camera.index, reason)
        self.log(camera, kind, f"skipping frame ({kind}): {reason}")

    def inference_failed(self, reason):
        self._stats.last_inference_error = shorten(reason)

    def log(self, camera, kind, text, warning=False):
        """Log at most once per ERROR_LOG_PERIOD_S per camera and kind of problem."""
        now = time.monotonic()
        key = (camera.index, kind)
        if now - self._logged.get(key, -ERROR_LOG_PERIOD_S) >= ERROR_LOG_PERIOD_S:
            self._logged[key] = now
            log = self._logger.warning if warning else self._logger.error
            log(f"{camera.topic}: {shorten(text)} (logged at most every {ERROR_LOG_PERIOD_S:.0f} s per "
                f"camera and kind)")
