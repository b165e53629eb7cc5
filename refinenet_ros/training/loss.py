"""Training losses and the weight average.

``SegmentationLoss`` is cross-entropy normalised over the *global* batch: each process sums
its pixel losses and divides by the weight of all valid pixels of every process, so the
gradients that DistributedDataParallel averages equal those of one process on the whole batch,
whatever the ignored pixels per process. Optional OHEM (online hard example mining) keeps only
the pixels whose top-class probability is below ``ohem_threshold`` (at least ``ohem_min_kept``
of the valid ones, chosen within each process), the usual remedy for thin, rare classes such
as poles and signs.
"""
import math

import torch
import torch.nn.functional as F

from . import distributed


class SegmentationLoss:
    def __init__(self, ctx, ignore_index, weight=None, ohem_threshold=0.0, ohem_min_kept=1 / 16):
        self.ctx, self.ignore_index, self.weight = ctx, ignore_index, weight
        self.ohem_loss = -math.log(ohem_threshold) if ohem_threshold > 0 else None
        self.ohem_min_kept = ohem_min_kept

    def __call__(self, logits, labels):
        pixel_loss = F.cross_entropy(logits, labels, weight=self.weight, ignore_index=self.ignore_index,
                                     reduction="none").flatten()
        valid = (labels != self.ignore_index).flatten()
        pixel_weight = valid.float()  # what each pixel counts for in the mean
        if self.weight is not None:
            pixel_weight = self.weight[labels.flatten().clamp(0, len(self.weight) - 1)] * pixel_weight
        if self.ohem_loss is not None:
            kept = self._hard(pixel_loss, pixel_weight, valid)
            pixel_loss, pixel_weight = pixel_loss * kept, pixel_weight * kept
        denominator = distributed.all_reduce_sum(self.ctx, pixel_weight.sum().detach().clone())
        # DDP averages gradients over processes: scale back up to the global-batch mean.
        return pixel_loss.sum() * self.ctx.world_size / denominator.clamp_min(1e-12)

    def _hard(self, pixel_loss, pixel_weight, valid):
        """1 for the hard pixels kept by OHEM, else 0 (the weight of the pixel's class is
        divided out first, so the threshold means a probability)."""
        unweighted = torch.where(pixel_weight > 0, pixel_loss / pixel_weight.clamp_min(1e-12), 0.0)
        keep = unweighted > self.ohem_loss
        min_kept = int(self.ohem_min_kept * int(valid.sum()))
        if int(keep.sum()) < min_kept:
            threshold = unweighted[valid].topk(min_kept).values[-1]
            keep = valid & (unweighted >= threshold)
        return keep.float()


class WeightAverage:
    """Exponential moving average of a model's parameters and buffers (``decay`` per step).

    Evaluated and shipped instead of the raw weights: a cheap, well-known gain on small
    datasets. Integer buffers (BatchNorm's step counter) are copied, not averaged.
    """

    def __init__(self, model, decay):
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model):
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                self.state[key].lerp_(value.detach(), 1.0 - self.decay)
            else:
                self.state[key].copy_(value)

    def state_dict(self):
        return self.state

    def load_state_dict(self, state):
        for key, value in state.items():
            self.state[key].copy_(value)
