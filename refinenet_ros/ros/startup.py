"""The node's start-up: its segmenter built from its parameters, and what it tells its user once
configured (one line on the model and how it runs, then the model's licence and any output it
cannot give)."""
from .params import read_list_file


class StartupError(RuntimeError):
    """The node cannot start with its parameters; the message says which and why."""


def input_size_refusal(segmenter, size):
    """Why the node's model cannot run at network input ``size`` (a static model), or None."""
    from ..engine.processing.requests import static_size_refusal
    return static_size_refusal(segmenter.model_name, segmenter.fixed_input_size, size)


def build_segmenter(values):
    """The Segmenter of the node's parameter ``values``; any failure is a :class:`StartupError`."""
    from ..engine import Segmenter  # torch is imported here, once main() has set the signal handlers
    try:
        palette = read_list_file(values["palette"], "palette") if values["palette"] else None
        names = read_list_file(values["class_names"], "class_names") if values["class_names"] else None
        return Segmenter(arch=values["arch"], weights=values["weights"], num_classes=values["num_classes"] or None,
                         device=values["device"], precision=values["precision"], palette=palette,
                         class_names=names, backend=values["backend"], streams=values["frames_in_flight"],
                         model_info=values["model_info"] or None, label_map=values["label_map"] or None,
                         cuda_graphs=values["cuda_graphs"])
    except Exception as exc:  # noqa: BLE001 - any model-loading failure is a start-up error
        raise StartupError(f"cannot load the model (arch={values['arch']!r}, "
                           f"weights={values['weights']!r}): {exc}") from exc



def configured_lines(segmenter, topics, max_batch_size):
    seg = segmenter
    arch = f" ({seg.arch})" if seg.arch not in (None, seg.model_name) else ""
    mapped = f" mapped from {len(seg.label_map.lut)} by {seg.label_map.source}" if seg.label_map else ""
    gain = seg.plan.streams_gain
    why = "" if gain is None else f" (two at once measured {gain:.2f}x the frames/s of one)"
    batching = (f"batches of up to {max_batch_size}" if seg.device.type == "cuda"
                else f"one frame per model call (CPU), {seg.streams} in flight{why}")
    lines = [f"configured: {', '.join(topics)} with {seg.model_name}{arch}, {seg.num_classes} classes{mapped} "
             f"({seg.backend}) on {seg.device} in {seg.precision} ({seg.plan.reason}); {batching}"]
    if seg.description.licence:
        lines.append(f"model licence: {seg.description.licence}")
    if not seg.gives_confidence:
        lines.append(f"no confidence: {seg.model_name} outputs labels only (the confidence topic is not "
                     f"published; the point cloud's confidence is NaN)")
    return lines
