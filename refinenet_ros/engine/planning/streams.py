"""How many calls a network runs at once - its frames in flight - decided here only.

Two frames in flight on a CPU double each label's latency; they give younger labels on average
only where they raise the frames/s by more than :data:`AGE_BREAK_EVEN_GAIN` (docs/node.md, "Frames
in flight"). So ``"auto"`` is two only for a backend that overlaps calls, on a CPU of two or more
cores, where the start-up measurement found two at once over that gain; else one. The node's live
trial then tries the other count as well (:func:`trial_counts`), first the one decided here.
"""
import numbers
import os

AUTO_IN_FLIGHT = (1, 2)   # what "auto" chooses between
AGE_BREAK_EVEN_GAIN = 5 / 3
TWO_AT_ONCE = " two at once"  # suffix of a measured label: two calls in flight (ms per frame)


def check_streams(streams):
    """``streams`` as given: "auto" (0 or None too) or an integer >= 1."""
    if streams in ("auto", 0, None):
        return "auto"
    if isinstance(streams, bool) or not isinstance(streams, numbers.Integral) or streams < 1:
        raise ValueError(f"streams must be 'auto' or an integer >= 1, got {streams!r}")
    return int(streams)


def _can_overlap(spec, device_type, cores):
    cores = len(os.sched_getaffinity(0)) if cores is None else cores
    return spec.overlaps and device_type == "cpu" and cores >= max(AUTO_IN_FLIGHT)


def resolve_streams(streams, spec, device_type, gain=None, cores=None):
    """The calls at once for ``streams`` ("auto" or an int) on a backend of ``spec``: a backend
    that does not overlap calls runs one; an explicit number is honoured; "auto" as the module
    docstring says (``gain``: measured frames/s of two at once over one, or None)."""
    streams = check_streams(streams)
    if not spec.overlaps:
        return 1
    if streams != "auto":
        return streams
    pays = gain is not None and gain > AGE_BREAK_EVEN_GAIN
    return max(AUTO_IN_FLIGHT) if pays and _can_overlap(spec, device_type, cores) else min(AUTO_IN_FLIGHT)


def trial_counts(requested, spec, device_type, decided, cores=None):
    """The frames-in-flight counts the node's live trial tries, ``decided`` first: both of
    :data:`AUTO_IN_FLIGHT` where ``requested`` is auto and the backend can overlap calls here,
    else ``decided`` alone."""
    if check_streams(requested) != "auto" or not _can_overlap(spec, device_type, cores):
        return [decided]
    return sorted(AUTO_IN_FLIGHT, key=lambda count: count != decided)


def streams_refusal(requested, spec):
    """Why ``requested`` calls at once cannot be honoured by a backend of ``spec``, or None."""
    requested = check_streams(requested)
    if requested != "auto" and requested >= 2 and not spec.overlaps:
        return (f"frames_in_flight {requested}: the {spec.name} backend runs one call at a time "
                f"(only openvino runs several); set 0 (auto) or 1, or backend openvino")
    return None
