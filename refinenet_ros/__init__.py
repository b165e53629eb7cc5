"""refinenet_ros: Light-Weight RefineNet semantic segmentation for ROS 2.

``from refinenet_ros import Segmenter`` gives the batched inference engine; it is imported
lazily so that ``import refinenet_ros`` stays light (no torch, no ROS).
"""
__all__ = ["SegmentationResult", "Segmenter"]


def __getattr__(name):
    if name in __all__:
        from . import engine
        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
