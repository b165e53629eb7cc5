"""The engine layer: batched inference without ROS. Rooms, each importing only those below it:
``hardware`` (this machine), ``model`` (what a model is), ``backends`` (how a network runs),
``planning`` (choosing how to run), ``processing`` (running frames), then the facade
(:class:`Segmenter`), the measuring child of ``backend: auto`` and sample frames. Public names are
imported lazily, so that importing a light module such as ``refinenet_ros.engine.model.palette``
does not import torch."""
__all__ = ["SegmentationResult", "Segmenter", "overlay"]
_HOMES = {"SegmentationResult": "processing.results", "Segmenter": "segmenter", "overlay": "model.palette"}


def __getattr__(name):
    if name in _HOMES:
        import importlib
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
