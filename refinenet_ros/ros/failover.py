"""What the node does when its backend fails at run time, so that labels never stop for good.

Whole batches failing in a row (:data:`FAILED_BATCHES_TO_SWITCH`) make the engine switch to the
next of its plan's alternatives (the measured ranking; the CPU after CUDA), with one log line and
the reason on /diagnostics. A frame that fails among others that succeed is that frame's fault, and
resets the count. CUDA running out of memory on a batch lowers the batch size instead (the
pipeline has already retried its frames one by one). No ROS imports.
"""
import threading

FAILED_BATCHES_TO_SWITCH = 3


def is_out_of_memory(error):
    return type(error).__name__ == "OutOfMemoryError" or "out of memory" in str(error).lower()


class Failover:
    def __init__(self, segmenter, log, on_switch=lambda: None):
        self.segmenter, self._log, self._on_switch = segmenter, log, on_switch
        self.failed_in_a_row, self.batch_cap, self.last_switch = 0, None, ""
        self._lock = threading.Lock()

    def batch_size(self, wanted):
        """``wanted``, or less after CUDA ran out of memory on a larger batch."""
        return wanted if self.batch_cap is None else min(wanted, self.batch_cap)

    def succeeded(self):
        with self._lock:
            self.failed_in_a_row = 0

    def failed(self, error, batch_size):
        """A whole batch of ``batch_size`` frames failed with ``error`` (the last one raised)."""
        reason = f"{type(error).__name__}: {str(error)[:300]}"
        with self._lock:
            if is_out_of_memory(error) and batch_size > 1:
                self.batch_cap = max(1, batch_size // 2)
                self._log(f"CUDA ran out of memory on a batch of {batch_size}: batches of at most "
                          f"{self.batch_cap} from now on ({reason})")
                return
            self.failed_in_a_row += 1
            if self.failed_in_a_row < FAILED_BATCHES_TO_SWITCH:
                return
            self.failed_in_a_row = 0
            failed = (f"{self.segmenter.backend}/{self.segmenter.precision} failed "
                      f"{FAILED_BATCHES_TO_SWITCH} batches in a row")
            # said before the swap: a report that shows the next backend also shows why
            self.last_switch = f"{failed} ({reason}): switching to the next backend"
            self.last_switch = f"{failed}: {self.segmenter.fall_back(reason)}"
        self._log(self.last_switch)
        self._on_switch()
