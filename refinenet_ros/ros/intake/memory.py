"""The live trial's choice, remembered beside the engine's backend decision: a restart under the
same conditions - CPU, runtimes, weights file, device, backend and precision, cameras, the modes
allowed and the band of the input rate - starts in the mode chosen last time, without a trial.
A JSON file per key in the cache folder of :mod:`...engine.planning.autotune` (safe to delete)."""
import hashlib
import json
import math
import os
import pathlib
import tempfile

from ...engine.hardware.cpu import cpu_info
from ...engine.planning.autotune import cache_dir, file_identity, runtime_versions

RATE_BAND = 1.5  # input rates within this factor of each other mostly share a band


def rate_band(rate):
    return round(math.log(rate) / math.log(RATE_BAND)) if rate > 0 else None


class TrialMemory:
    def __init__(self, fields, modes, folder=None):
        self.fields, self.modes = {**fields, "modes": sorted(str(m) for m in modes)}, list(modes)
        self.folder = pathlib.Path(folder) if folder else cache_dir().parent / "intake_choice"

    @classmethod
    def of(cls, segmenter, cameras, modes, folder=None):
        plan, cpu = segmenter.plan, cpu_info()
        fields = {"cpu": cpu.model, "flags": sorted(cpu.flags), "runtimes": runtime_versions(),
                  "weights": file_identity(plan.weights) if plan.weights else None, "device": plan.device,
                  "backend": plan.backend, "precision": plan.precision, "cameras": cameras}
        return cls(fields, modes, folder)

    def _key(self, rate):
        fields = {**self.fields, "rate_band": rate_band(rate)}
        return fields, self.folder / f"{hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]}.json"

    def recall(self, rate):
        """(mode, label age ms) chosen last time at this input rate's band, or None."""
        fields, path = self._key(rate)
        try:
            record = json.loads(path.read_text())
            mode = next(m for m in self.modes if str(m) == record["mode"])
            if record["fields"] == fields:
                return mode, float(record["age_ms"])
        except (OSError, ValueError, KeyError, TypeError, StopIteration):
            pass  # absent, corrupt or from other conditions: a trial decides
        return None

    def remember(self, rate, mode, age_ms):
        fields, path = self._key(rate)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp_", suffix=".json")
            with os.fdopen(handle, "w") as f:
                json.dump({"fields": fields, "mode": str(mode), "age_ms": round(age_ms, 1)}, f, indent=1)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache: the next start runs its trial again
