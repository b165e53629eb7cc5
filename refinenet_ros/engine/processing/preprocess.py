"""uint8 RGB frames -> the network's input batch, on its device, as the model's description says:
colour order, resize (bilinear), scaling and mean/std, padding up to ``size_multiple``."""
import numpy as np
import torch
import torch.nn.functional as F

from .upsample import upsample


class Preprocessor:
    """The input side of one network (``spec``: its description's :class:`..model.description.InputSpec`)."""

    def __init__(self, spec, device):
        self.spec, self.device = spec, device
        a, b = spec.affine()
        self._a = torch.tensor(a, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self._b = torch.tensor(b, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self._pinned = {}

    def normalise(self, pixels):
        """uint8 (or 0-255 float) NCHW RGB -> the model's float input."""
        if self.spec.color_order == "bgr":
            pixels = pixels.flip(1)
        return pixels.float() * self._a + self._b

    def batch(self, frames, indices, size):
        """One uint8 upload per native size; returns (index order, NCHW batch at ``size`` padded
        to ``padded(size)``)."""
        by_native = {}
        for i in indices:
            by_native.setdefault(frames[i].shape[:2], []).append(i)
        order, parts = [], []
        for members in by_native.values():
            order += members
            parts.append(self.resized(self.upload(np.stack([frames[i] for i in members])), size))
        return order, self.network_input(parts[0] if len(parts) == 1 else torch.cat(parts), size)

    def upload(self, frames):
        """An N x H x W x 3 uint8 array on the device (pinned and asynchronous on CUDA)."""
        return self._to_device(frames)

    def resized(self, pixels, size):
        """N x H x W x 3 uint8 ``pixels`` on the device -> the normalised NCHW batch at ``size``."""
        pixels = pixels.permute(0, 3, 1, 2)
        if pixels.shape[2] * pixels.shape[3] > size[0] * size[1]:
            # shrink before normalising (both are linear): a big frame is copied to float once
            return self.normalise(upsample(pixels.float(), size))
        return upsample(self.normalise(pixels), size)  # NHWC memory: already channels_last

    def network_input(self, x, size):
        """A normalised ``size`` batch as the network takes it: padded, channels_last."""
        return self.pad(x, size).contiguous(memory_format=torch.channels_last)

    def pad(self, x, size):
        """A normalised ``size`` batch padded up to ``size_multiple`` with zeros (the mean colour)."""
        padded = self.spec.padded(size)
        if padded == tuple(size):
            return x
        return F.pad(x, (0, padded[1] - size[1], 0, padded[0] - size[0]))

    def unpadded(self, scores, size):
        """The part of the network's ``scores`` (or labels) that covers a ``size`` input."""
        if self.spec.padded(size) == tuple(size):
            return scores
        h, w = self.spec.kept(scores.shape[-2:], size)
        return scores[..., :h, :w]

    def _to_device(self, array):
        if self.device.type != "cuda":
            return torch.from_numpy(array)
        pinned = self._pinned.get(array.shape)
        if pinned is None:  # reused: the previous copy finished when its results came back
            if len(self._pinned) > 8:
                self._pinned.clear()
            pinned = self._pinned[array.shape] = torch.empty(array.shape, dtype=torch.uint8,
                                                             pin_memory=True)
        pinned.numpy()[...] = array
        return pinned.to(self.device, non_blocking=True)
