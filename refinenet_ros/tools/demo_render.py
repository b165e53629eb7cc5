"""The demo's pictures and report: input | colour | overlay panels with a class legend, and the
JSON + text summary. numpy and OpenCV only (no rclpy)."""
import json

import cv2
import numpy as np

from ..ros.intake.age import mean_age_ms

FONT = cv2.FONT_HERSHEY_SIMPLEX
PANEL_TITLES = ("input", "segmentation", "overlay")
TITLE_HEIGHT = 28
ROW_HEIGHT = 24


def class_colours(labels, color):
    """{class: RGB} as published: the colour of each class's first pixel in the colour image."""
    flat_labels, flat_color = labels.reshape(-1), color.reshape(-1, 3)
    classes, first = np.unique(flat_labels, return_index=True)
    return {int(k): tuple(int(c) for c in flat_color[i]) for k, i in zip(classes, first)}


def _text(image, text, origin, scale=0.55, colour=(255, 255, 255)):
    cv2.putText(image, text, origin, FONT, scale, colour, 1, cv2.LINE_AA)


def legend(entries, width):
    """Rows of 'swatch  name  share%' for ``entries`` [(name, rgb, share)], wrapped in columns."""
    column_width = 230
    columns = max(1, width // column_width)
    rows = max(1, -(-len(entries) // columns))
    image = np.full((rows * ROW_HEIGHT + 8, width, 3), 32, np.uint8)
    for i, (name, rgb, share) in enumerate(entries):
        x, y = 8 + (i // rows) * column_width, 4 + (i % rows) * ROW_HEIGHT
        cv2.rectangle(image, (x, y + 3), (x + 26, y + ROW_HEIGHT - 5), tuple(int(c) for c in rgb), -1)
        cv2.rectangle(image, (x, y + 3), (x + 26, y + ROW_HEIGHT - 5), (200, 200, 200), 1)
        _text(image, f"{name} {100 * share:.1f}%", (x + 34, y + ROW_HEIGHT - 8), 0.5)
    return image


def side_by_side(rgb, color, overlay, labels, class_names, caption=""):
    """One RGB picture: titled input | colour | overlay panels over a legend of the classes in
    the frame (largest first) with their published colours and pixel shares."""
    height, width = labels.shape
    panels = [cv2.resize(p, (width, height), interpolation=cv2.INTER_NEAREST) if p.shape[:2] != (height, width)
              else p for p in (rgb, color, overlay)]
    titled = []
    for title, panel in zip(PANEL_TITLES, panels):
        bar = np.full((TITLE_HEIGHT, width, 3), 32, np.uint8)
        _text(bar, title, (8, 20), 0.6)
        titled.append(np.vstack([bar, panel]))
    row = np.hstack(titled)
    counts = np.bincount(labels.reshape(-1).astype(np.int64), minlength=len(class_names))
    colours = class_colours(labels, color)
    order = [k for k in np.argsort(-counts, kind="stable") if counts[k] > 0]
    entries = [(_name(class_names, k), colours[int(k)], counts[k] / labels.size) for k in order]
    parts = [row, legend(entries, row.shape[1])]
    if caption:
        bar = np.full((TITLE_HEIGHT, row.shape[1], 3), 32, np.uint8)
        _text(bar, caption, (8, 20), 0.5, (200, 200, 200))
        parts.append(bar)
    return np.vstack(parts)


def _name(class_names, k):
    return class_names[k] if k < len(class_names) else f"class_{k}"


def write_png(path, rgb):
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")


def still_changes(frame_a, frame_b, labels_a, labels_b):
    """(pixels whose label changed, pixels whose image did not change in a 5x5 neighbourhood) of two
    consecutive RGB frames and their labels: flicker is the first over the second."""
    diff = cv2.absdiff(cv2.cvtColor(frame_a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(frame_b, cv2.COLOR_RGB2GRAY))
    still = cv2.dilate(diff, np.ones((5, 5), np.uint8)) <= 2
    return int((still & (labels_a != labels_b)).sum()), int(still.sum())


class FlickerCount:
    """The demo's own flicker: :func:`still_changes` over consecutive labelled frames."""

    def __init__(self):
        self.changed = self.still = 0
        self._previous = None

    def add(self, frame, labels):
        if self._previous is not None and self._previous[0].shape == frame.shape == (*labels.shape, 3):
            changed, still = still_changes(self._previous[0], frame, self._previous[1], labels)
            self.changed, self.still = self.changed + changed, self.still + still
        self._previous = frame, labels

    def share(self):
        return round(self.changed / self.still, 5) if self.still else None


def summary(latencies_ms, output_times, class_pixels, class_names, **facts):
    """The report dict: fps and latency over the measured frames, classes seen by pixel share."""
    fps = (len(output_times) - 1) / (output_times[-1] - output_times[0]) if len(output_times) > 1 else 0.0
    total = sum(class_pixels.values()) or 1
    seen = sorted(class_pixels.items(), key=lambda kv: -kv[1])
    age = mean_age_ms(zip(output_times, (ms / 1000.0 for ms in latencies_ms)))
    report = {"labels_ms_old_on_average": None if age is None else round(age)}
    report.update(facts)
    report.update(
        measured_frames=len(output_times),
        output_fps=round(fps, 2),
        latency_ms={"mean": _round(np.mean(latencies_ms)), "p50": _round(np.percentile(latencies_ms, 50)),
                    "p90": _round(np.percentile(latencies_ms, 90)), "max": _round(np.max(latencies_ms))}
        if latencies_ms else None,
        classes_seen={_name(class_names, k): round(n / total, 4) for k, n in seen},
    )
    inference = facts.get("node_inference_ms_p50")
    # what the node sustains apart from the source (a 10 frames/s video cannot show more), with
    # the frames in flight at once
    in_flight = str(facts.get("node_frames_in_flight", "")).partition(",")[0]
    streams = int(in_flight) if in_flight.isdigit() else 1
    report["node_capacity_fps"] = round(streams * 1000.0 / float(inference), 1) if inference else None
    if facts.get("source_fps"):
        report["output_vs_source"] = round(fps / facts["source_fps"], 3)
    return report


def _round(value):
    return round(float(value), 1)


def report_text(report):
    lines = ["refinenet_ros demo report", "========================="]
    if report.get("labels_ms_old_on_average") is not None:
        lines.append(f"labels {report['labels_ms_old_on_average']} ms old on average (the time-weighted age "
                     f"of the newest label, from its frame's stamp)")
    for key, value in report.items():
        if key == "classes_seen":
            lines.append("classes seen (share of pixels):")
            lines += [f"  {name:<14} {100 * share:5.1f}%" for name, share in value.items()]
        elif key == "latency_ms" and value:
            lines.append("latency (frame stamp -> labels received, ms): "
                         + ", ".join(f"{k} {v}" for k, v in value.items()))
        elif isinstance(value, (list, dict)):
            lines.append(f"{key}: {json.dumps(value)}")
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"


def rate_over(times, window):
    """Frames per second of ``times`` within the span of ``window`` (the measured outputs)."""
    if len(window) < 2:
        return None
    inside = [t for t in times if window[0] <= t <= window[-1]]
    return round((len(inside) - 1) / (window[-1] - window[0]), 2) if len(inside) > 1 else None
