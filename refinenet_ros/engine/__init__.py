"""The engine layer: batched inference without ROS (PyTorch or ONNX Runtime networks,
precision and device choice, palettes, the encoding table, shipped-weights lookup, ONNX export
and int8). Its public names are imported lazily, so that importing a light module such as
``refinenet_ros.engine.encodings`` does not import torch."""
__all__ = ["SegmentationResult", "Segmenter", "overlay", "to_rgb"]
_HOMES = {"SegmentationResult": "segmenter", "Segmenter": "segmenter", "overlay": "palette",
          "to_rgb": "encodings"}


def __getattr__(name):
    if name in _HOMES:
        import importlib
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
