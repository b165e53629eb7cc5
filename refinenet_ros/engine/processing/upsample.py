"""Top class per pixel of logits upsampled to the output size, in bounded memory.

Upsampling all C class maps of an 8K frame at once holds C x 33M floats (1.5 GB for CamVid's
11 classes), and the confidence as much again. Above ``MAX_SCORE_ELEMENTS`` the maps are
upsampled one class at a time into a running maximum instead: the same bilinear values per
class, the same first-index tie rule as ``max(1)``, and the softmax denominator of the
confidence kept online (rescaled whenever the maximum grows), so memory is a few H x W planes
whatever C is (the peak memory it saves: docs/performance.md).
"""
import torch
import torch.nn.functional as F

from ..hardware.memory import MAX_SCORE_ELEMENTS  # 1080p with up to 32 classes: all classes at once


def upsample(scores, size):
    """Bilinear (align_corners=False, as the models train) resize of N x C x h x w ``scores``."""
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores
    return F.interpolate(scores, size=tuple(size), mode="bilinear", align_corners=False)


def top_class(logits, size, with_confidence=False, max_elements=None, probabilities=False):
    """(labels, confidence) of N x C x h x w ``logits`` upsampled to ``size`` (H, W): labels
    N x H x W (int64, or int32 when computed class by class), confidence the top-class
    softmax probability (N x H x W float32) when asked for, else None. Class by class above
    ``max_elements`` (default ``MAX_SCORE_ELEMENTS``) upsampled scores. ``probabilities``:
    the scores are probabilities already (the confidence is the top one)."""
    n, classes = logits.shape[:2]
    limit = MAX_SCORE_ELEMENTS if max_elements is None else max_elements
    if n * classes * size[0] * size[1] <= limit:
        scores = upsample(logits, size)
        top, labels = scores.max(1)  # first maximal index, as argmax, several times faster on NCHW
        if not with_confidence:
            return labels, None
        if probabilities:
            return labels, top.float()
        return labels, (scores - top.unsqueeze(1)).exp_().sum(1).reciprocal_()
    if probabilities:
        labels, _ = _top_class_by_class(logits, size, False)
        return labels, (_by_class_top(logits, size) if with_confidence else None)
    return _top_class_by_class(logits, size, with_confidence)


def merged_confidence(shares, count, labels, lut):
    """Per pixel, the summed probability of the classes that ``lut`` (model class -> output class)
    merges with the pixel's top class ``labels`` (N x H x W). ``shares(c)`` gives model class c's
    N x H x W share of the probability (any positive multiple of it, the same for every class),
    asked one class at a time so that memory stays a few planes whatever the class count."""
    group = lut[labels.long()]
    total = merged = None
    for index in range(count):
        share = shares(index)
        total = share.clone() if total is None else total.add_(share)
        part = share * (group == lut[index])
        merged = part if merged is None else merged.add_(part)
    return merged.div_(total)


def score_shares(scores, size, probabilities=False):
    """The ``shares`` of :func:`merged_confidence` for N x C x h x w ``scores`` upsampled to
    ``size``: the probabilities themselves, or exp(logit - top logit)."""
    top = None if probabilities else _by_class_top(scores, size)

    def share(index):
        plane = upsample(scores[:, index:index + 1].float(), size)[:, 0]
        return plane if probabilities else plane.sub_(top).exp_()
    return share


def nearest_labels(labels, size):
    """A labels model's N x h x w labels at ``size``: nearest (floor), as its classes are."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    return F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest")[:, 0].long()


def _by_class_top(scores, size):
    top = None
    for index in range(scores.shape[1]):
        plane = upsample(scores[:, index:index + 1].float(), size)[:, 0]
        top = plane if top is None else torch.maximum(top, plane)
    return top


def _top_class_by_class(logits, size, with_confidence):
    classes = logits.shape[1]
    labels = None
    top = denominator = None  # running maximum and sum of exp(score - maximum)
    for index in range(classes):
        plane = upsample(logits[:, index:index + 1].float(), size)[:, 0]
        if top is None:
            top = plane
            labels = torch.zeros(plane.shape, dtype=torch.int32, device=plane.device)
            denominator = torch.ones_like(plane) if with_confidence else None
            continue
        higher = plane > top  # strictly: on ties the lower index stays, as in max(1)
        if with_confidence:
            new_top = torch.maximum(top, plane)
            denominator.mul_((top - new_top).exp_()).add_((plane - new_top).exp_())
            top = new_top
        else:
            top = torch.maximum(top, plane)
        labels.masked_fill_(higher, index)
        del plane, higher
    return labels, denominator.reciprocal_() if with_confidence else None
