"""The engine layer: batched inference without ROS (PyTorch or ONNX Runtime networks,
precision and device choice, palettes, shipped-weights lookup, ONNX export and int8)."""
from .encodings import to_rgb
from .palette import overlay
from .segmenter import SegmentationResult, Segmenter

__all__ = ["SegmentationResult", "Segmenter", "overlay", "to_rgb"]
