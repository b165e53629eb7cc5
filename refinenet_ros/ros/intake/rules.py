"""The intake's rules as pure functions of what is known now (tests call them without threads).

Waiting for the next frame: a label made from a frame that sat in its slot is old the moment it is
published. When the only pending frame has already waited :data:`STALE_FRACTION` of its camera's
period, segmenting the camera's next frame instead gives younger labels on average whenever
segmenting takes longer than the camera period (docs/node.md; the fraction from
``tools/simulate_fresh_frames``). The wait ends when another camera's frame arrives, or half a
period after the next frame was due (then the stale frame is taken).
"""
STALE_FRACTION = 0.4   # of the camera period: the age-optimal threshold in docs/performance.md
LATE_AFTER = 1.5       # periods after its arrival that a frame's successor counts as late


def frames_wanted(max_batch_size, active_cameras):
    """How many frames a batch waits for: one per active camera, up to ``max_batch_size``."""
    return min(max_batch_size, max(active_cameras, 1))


def is_stale(waited_s, period_s):
    """Whether a frame that has waited ``waited_s`` is worth passing over for its camera's next
    one (``period_s`` None: the period is not known yet, so never)."""
    return period_s is not None and waited_s >= STALE_FRACTION * period_s


def next_frame_deadline(received, period_s):
    """When waiting for the next frame of a camera whose pending frame arrived at ``received`` ends."""
    return received + LATE_AFTER * period_s


def round_robin(pending, cameras, start, limit):
    """(up to ``limit`` of the ``pending`` frames, the camera to start from next time): cameras in
    order from ``start``, so no camera is served twice while another pending camera waits."""
    by_camera = {frame.camera: frame for frame in pending}
    order = [(start + k) % cameras for k in range(cameras)]
    frames = [by_camera[camera] for camera in order if camera in by_camera][:limit]
    return frames, ((frames[-1].camera + 1) % cameras if frames else start)
