"""The node's per-frame image outputs, one table: each row gives the topic under
``<ns>/segmentation/``, its ``publish_<name>`` switch (if it has one), what the engine must
compute for it, how its image is made from a :class:`~refinenet_ros.engine.SegmentationResult`,
whether RViz shows it, and its line in the docs. The parameters, the settings, the camera's
publishers, the pipeline's requests to the engine and the README's topic rows all read it, so a
new output is one row here plus its computation in the engine.

Masks and the point cloud are outputs too but are configured by their own parameters
(``mask_groups``, ``depth_topics``); they are built in :mod:`.navigation`. No ROS imports.
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Output:
    content: str                  # what the image holds (parameter description, README)
    image: Callable               # SegmentationResult -> (H x W [x C] array, encoding)
    switch: bool | None = None    # default of publish_<name>; None: always on while subscribed
    needs: tuple = ()             # engine extras: "color", "confidence", "overlay"
    rviz: bool = False            # shown in RViz by segmentation.launch.py use_rviz:=true


def _labels(result):
    return result.labels, "mono8" if result.labels.dtype == np.uint8 else "mono16"


OUTPUTS = {
    "labels": Output("class index per pixel, mono8 (mono16 above 255 classes)", _labels),
    "color": Output("rgb8, palette applied", lambda r: (r.color, "rgb8"), switch=True, needs=("color",),
                    rviz=True),
    "overlay": Output("rgb8 blend of image and colours (`overlay_alpha`)", lambda r: (r.overlay, "rgb8"),
                      switch=True, needs=("overlay", "color"), rviz=True),
    "confidence": Output("mono8, top-class probability x 255", lambda r: (r.confidence_mono8(), "mono8"),
                         switch=False, needs=("confidence",)),
}
# what the other outputs need from the engine (masks need the labels alone)
OTHER_NEEDS = {"points": ("confidence", "color")}
SWITCHES = {f"publish_{name}": name for name, output in OUTPUTS.items() if output.switch is not None}
RVIZ_OUTPUTS = tuple(name for name, output in OUTPUTS.items() if output.rviz)


def needs(outputs, extra):
    """Whether any of ``outputs`` (names) needs ``extra`` from the engine."""
    return any(extra in (OUTPUTS[name].needs if name in OUTPUTS else OTHER_NEEDS.get(name, ()))
               for name in outputs)


def is_enabled(name, published):
    """Whether output ``name`` is on: switched on (in ``published``), or an output without switch."""
    return name not in SWITCHES.values() or name in published


def enabled_outputs(values):
    """The switchable outputs switched on in ``values`` (parameter name -> value)."""
    return frozenset(name for parameter, name in SWITCHES.items() if values[parameter])


def topic_rows():
    """The README topic table's rows of these outputs."""
    return [f"| `<ns>/segmentation/{name}` | `sensor_msgs/Image` | {output.content}"
            + (f" (`publish_{name}`)" if output.switch is False else "") + " |"
            for name, output in OUTPUTS.items()]
