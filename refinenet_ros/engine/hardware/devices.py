"""Device names as the engine and the node's ``device`` parameter take them, parsed in one place
(pure Python: the parameter table and launch files use it without importing torch)."""

# Intel accelerators reached through OpenVINO.
INTEL_DEVICES = ("intel_gpu", "intel_npu")
DEVICE_HELP = "'auto', 'cpu', 'cuda', 'cuda:N', 'intel_gpu' or 'intel_npu'"


class Device(str):
    """A resolved device name ("cpu", "cuda:0", ...) that answers ``.type`` and ``.index`` like
    a :class:`torch.device`, for the networks whose runtime is not torch (no torch import)."""

    type = property(lambda self: device_type(self))
    index = property(lambda self: cuda_index(self) if self.type == "cuda" else None)


def device_name_problem(device):
    """Why ``device`` is not a device name this package takes, or None (no hardware check)."""
    if not isinstance(device, str):
        return f"device must be a string such as {DEVICE_HELP}, got {device!r}"
    if device in ("auto", "cpu", "cuda", *INTEL_DEVICES):
        return None
    kind, _, index = device.partition(":")
    if kind == "cuda" and index.isdigit():
        return None
    return f"unknown device {device!r}; use {DEVICE_HELP}"


def device_type(device):
    """"cpu", "cuda", "intel_gpu" or "intel_npu" of a resolved device name."""
    return device.partition(":")[0]


def cuda_index(device):
    """N of "cuda:N", None of "cuda" (the current device); ``device`` a valid CUDA name."""
    index = device.partition(":")[2]
    return int(index) if index else None
