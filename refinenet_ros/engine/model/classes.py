"""The classes results are in: a model's own classes (its output channels), or a label map's
classes merged from them, with their names, colours and the dtype of a label image; and the one
check of a class count against what a model has."""
from dataclasses import dataclass

import numpy as np

from .label_map import LabelMap, read_label_map
from .palette import check_palette, voc_palette


def label_dtype(num_classes):
    """The dtype of a label image of ``num_classes`` classes: uint8 up to 255, else uint16."""
    return np.uint8 if num_classes <= 255 else np.uint16


def check_class_count(stated, actual, stated_by, actual_in, unit="classes", error=ValueError):
    """Refuse ``stated`` classes (named by ``stated_by``) where ``actual_in`` has ``actual``;
    either may be None (not known), which passes."""
    if stated is not None and actual is not None and int(stated) != int(actual):
        raise error(f"{stated} classes named by {stated_by} but {actual_in} has {actual} {unit}")


def check_class_names(names, num_classes):
    if names is None:
        return [f"class_{i}" for i in range(num_classes)]
    names = [str(n) for n in names]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names given for {num_classes} classes")
    return names


@dataclass(frozen=True)
class OutputClasses:
    """What results are in. ``model_classes``: the network's output channels; ``names`` and
    ``palette``: the output classes (a label map's where one is given, else the model's)."""
    model_classes: int
    names: tuple
    palette: np.ndarray          # len(names) x 3 uint8
    label_map: LabelMap | None = None

    @classmethod
    def of(cls, description, model_classes, label_map=None, names=None, palette=None):
        """The output classes of a model ``description`` with ``model_classes`` outputs; a
        ``label_map`` (a file, or a :class:`LabelMap`) merges them; ``names`` and ``palette``
        replace the shipped ones (checked against the output class count)."""
        if label_map is not None and not isinstance(label_map, LabelMap):
            label_map = read_label_map(label_map, description.class_names)
        count = len(label_map.classes) if label_map else int(model_classes)
        names = check_class_names(names or (label_map.classes if label_map else description.classes), count)
        if palette is None:
            shipped = label_map.palette if label_map else (description.palette or ())
            palette = shipped if len(shipped) >= count else voc_palette(count)
        return cls(int(model_classes), tuple(names), check_palette(palette, count), label_map)

    @property
    def count(self):
        """The number of output classes."""
        return len(self.names)

    @property
    def lut(self):
        """model class -> output class (int64), or None without a label map."""
        return None if self.label_map is None else self.label_map.lut

    @property
    def dtype(self):
        return label_dtype(self.count)
