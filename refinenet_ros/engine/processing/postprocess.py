"""The output side of one network, the counterpart of :mod:`.preprocess`: its scores (or labels)
at the network's stride become the top class per pixel at the output size (in bounded memory:
:mod:`.upsample`) and its confidence, in the output classes (a label map's lookup table and merged
confidence), coloured by the palette, and come back as uint8 (or uint16) arrays
(:class:`.results.SegmentationResult`).
"""
import numpy as np
import torch

from .results import SegmentationResult
from .upsample import merged_confidence, nearest_labels, score_shares, top_class


class Postprocessor:
    """The output side for a model ``description`` whose results are in ``classes`` (a
    :class:`..model.classes.OutputClasses`), on ``device``."""

    def __init__(self, description, classes, device):
        self.classes, self.output = classes, description.output
        self._probabilities = description.output == "probabilities"
        self._palette = torch.from_numpy(classes.palette).to(device)
        self._lut = None if classes.lut is None else torch.from_numpy(classes.lut).to(device)
        self._device_dtype = torch.uint8 if classes.dtype == np.uint8 else torch.int32

    def top_classes(self, scores, size, with_confidence):
        """(labels, confidence or None) at ``size`` of one batch's scores (or a labels model's
        labels), in the output classes."""
        if self.output == "labels":
            labels = nearest_labels(scores, size)
            return (labels if self._lut is None else self._lut[labels]), None
        mapped = with_confidence and self._lut is not None
        labels, confidence = top_class(scores, size, with_confidence and not mapped,
                                       probabilities=self._probabilities)
        if self._lut is None:
            return labels, confidence
        if mapped:
            confidence = merged_confidence(score_shares(scores, size, self._probabilities), scores.shape[1],
                                           labels, self._lut)
        return self._lut[labels.long()], confidence

    def top_of_probabilities(self, probabilities, with_confidence):
        """(labels, confidence or None) of N x C x H x W probabilities (averaged over scales and
        flips), in the output classes."""
        top, labels = probabilities.max(1)
        if self._lut is None:
            return labels, top if with_confidence else None
        confidence = merged_confidence(lambda c: probabilities[:, c], probabilities.shape[1], labels,
                                       self._lut) if with_confidence else None
        return self._lut[labels], confidence

    def on_device(self, labels, confidence, with_color):
        """The outputs of a batch as they leave the device: {"labels": uint8 (int32 above 255
        classes), "confidence": float32 (where given), "color": uint8 RGB (where asked)}."""
        outputs = {"labels": labels.to(self._device_dtype)}
        if confidence is not None:
            outputs["confidence"] = confidence
        if with_color:
            outputs["color"] = self._palette.index_select(0, labels.flatten()).view(*labels.shape, 3)
        return outputs

    def from_host(self, outputs):
        """A :class:`SegmentationResult` per row of a batch's outputs (:meth:`on_device`'s, as numpy)."""
        labels = outputs["labels"].astype(self.classes.dtype, copy=False)
        color, confidence = outputs.get("color"), outputs.get("confidence")
        return [SegmentationResult(labels[k], None if color is None else color[k],
                                   None if confidence is None else confidence[k]) for k in range(len(labels))]

    def results(self, labels, confidence, with_color):
        """A :class:`SegmentationResult` per row of a batch's N x H x W labels (and confidence)."""
        outputs = self.on_device(labels, confidence, with_color)
        return self.from_host({name: tensor.cpu().numpy() for name, tensor in outputs.items()})
