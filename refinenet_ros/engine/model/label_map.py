"""Label maps: a model's classes merged, many to one, into the classes a robot acts on.

A YAML file (safe loader)::

    classes:
      - {name: drivable, color: [128, 64, 128], from: [road, pavement]}
      - {name: obstacle, color: [220, 20, 60], from: [car, pedestrian, bicyclist, pole, fence]}
    unmapped: other          # every class not listed goes to this class (the last, unless listed)
    unmapped_color: [0, 0, 0]

The engine applies it as a lookup table on the labels; the confidence of a pixel becomes the
summed probability of the model classes merged into its class. Everything published (labels,
colours, masks, point cloud, LabelInfo) is then in the mapped classes.
"""
import os
from dataclasses import dataclass

import numpy as np

from .files import read_yaml

HELP = "docs/models.md, 'Label maps'"


class LabelMapError(ValueError):
    """A label map that cannot be read or does not fit the model's classes."""


@dataclass(frozen=True)
class LabelMap:
    classes: tuple       # the mapped class names
    palette: np.ndarray  # K x 3 uint8, the mapped classes' colours
    lut: np.ndarray      # model class index -> mapped class index (int64)
    source: str

    @property
    def groups(self):
        """K x C float32 0/1: which model classes each mapped class sums."""
        groups = np.zeros((len(self.classes), len(self.lut)), np.float32)
        groups[self.lut, np.arange(len(self.lut))] = 1.0
        return groups

    @property
    def key(self):
        """Hashable identity, for caches of compiled graphs."""
        return (self.source, tuple(self.lut.tolist()))


def read_label_map(path, model_classes):
    """The :class:`LabelMap` in ``path`` for a model whose classes are ``model_classes``."""
    raw = read_yaml(path, "label map", LabelMapError)
    return parse_label_map(raw, list(model_classes), os.fspath(path))


def parse_label_map(raw, model_classes, source="label map"):
    def fail(what):
        raise LabelMapError(f"label map {source}: {what} ({HELP})")
    if not isinstance(raw, dict) or not isinstance(raw.get("classes"), list) or not raw["classes"]:
        fail("expected 'classes:', a list of {name, color, from} entries")
    unknown_keys = sorted(set(raw) - {"classes", "unmapped", "unmapped_color"})
    if unknown_keys:
        fail(f"unknown field {unknown_keys[0]!r} (fields: classes, unmapped, unmapped_color)")
    names, colors, lut = [], [], np.full(len(model_classes), -1, np.int64)
    for number, entry in enumerate(raw["classes"], 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or \
                not isinstance(entry.get("from"), list) or not entry["from"]:
            fail(f"entry {number} needs a name and a non-empty 'from' list of the model's classes")
        if entry["name"] in names:
            fail(f"class {entry['name']!r} is listed twice")
        for member in entry["from"]:
            if member not in model_classes:
                fail(f"{entry['name']!r} takes unknown class {member!r}; the model's classes are "
                     f"{', '.join(model_classes)}")
            index = model_classes.index(member)
            if lut[index] >= 0:
                fail(f"class {member!r} is mapped twice ({names[lut[index]]!r} and {entry['name']!r})")
            lut[index] = len(names)
        names.append(entry["name"])
        colors.append(_color(entry.get("color"), len(names) - 1, fail))
    left = [model_classes[i] for i in np.flatnonzero(lut < 0)]
    unmapped = raw.get("unmapped")
    if unmapped is not None:
        if not isinstance(unmapped, str):
            fail(f"unmapped must be a class name, got {unmapped!r}")
        if unmapped not in names:
            names.append(unmapped)
            colors.append(_color(raw.get("unmapped_color", [0, 0, 0]), len(names) - 1, fail))
        lut[lut < 0] = names.index(unmapped)
    elif left:
        fail(f"the model's classes {', '.join(left)} are not mapped: list them, or set unmapped")
    return LabelMap(tuple(names), np.asarray(colors, np.uint8), lut, source)


def _color(value, index, fail):
    if value is None:
        from .palette import voc_palette
        return voc_palette(index + 1)[index].tolist()
    if not isinstance(value, list) or len(value) != 3 or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value):
        fail(f"color must be [r, g, b] integers 0-255, got {value!r}")
    return value
