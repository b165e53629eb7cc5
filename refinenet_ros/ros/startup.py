"""What the node tells its user once a model is configured: one line on the model and how it
runs, then the model's licence and any output it cannot give. No ROS imports."""


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
