"""The whole pipeline of a group of equal-size frames as one function of device tensors: uint8
N x H x W x 3 in; resize, colour order and normalisation as the model's description says; the
network; upsampling, the top class (first maximal index), its confidence, the label map's lookup
table and the palette; uint8 (or int32 above 255 classes) labels, float32 confidence and uint8
colours out. Nothing in it waits for the host, so a CUDA graph can capture it whole
(:mod:`.cuda_graphs`); it is the step-by-step path's own pieces composed, so its labels are that
path's on every device.
"""
from dataclasses import dataclass, replace

from ..hardware.memory import MAX_SCORE_ELEMENTS


@dataclass(frozen=True)
class FrameShape:
    """What one call of the function is for (and the key of its CUDA graph)."""
    batch: int
    frame_size: tuple       # (h, w) of every frame
    network_size: tuple     # (h, w) the network runs at
    output_size: tuple      # (h, w) of the outputs
    with_confidence: bool
    with_color: bool

    def with_batch(self, batch):
        return replace(self, batch=batch)

    def score_elements(self, classes):
        """Elements of the upsampled scores of all classes: above :data:`..hardware.memory.MAX_SCORE_ELEMENTS`
        the top class is taken class by class (bounded memory)."""
        return self.batch * classes * self.output_size[0] * self.output_size[1]

    def fits(self, classes):
        return self.score_elements(classes) <= MAX_SCORE_ELEMENTS


class FrameFunction:
    """``network`` between its ``preprocessor`` and ``postprocessor`` as one function."""

    def __init__(self, network, preprocessor, postprocessor):
        self.network, self.input, self.output = network, preprocessor, postprocessor

    def __call__(self, pixels, shape, memory=None, clock=None):
        """{"labels", "confidence" (where asked and given), "color" (where asked)} device tensors
        of N x H x W x 3 uint8 ``pixels`` on the network's device; ``clock`` (a
        :class:`.paths.StageClock`, not while a graph is captured) marks the stages."""
        mark = clock.mark if clock is not None else (lambda stage: None)
        size = shape.network_size
        x = self.input.network_input(self.input.resized(pixels, size), size)
        mark("preprocess")
        scores = self.input.unpadded(self.network(x, memory), size)
        mark("model")
        with_confidence = shape.with_confidence and self.network.description.gives_confidence
        labels, confidence = self.output.top_classes(scores, shape.output_size, with_confidence)
        return self.output.on_device(labels, confidence, shape.with_color)
