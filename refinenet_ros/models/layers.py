"""Building blocks shared by the model families (pure PyTorch)."""
from collections import OrderedDict

import torch.nn as nn
import torch.nn.functional as F


def conv1x1(in_channels, out_channels, stride=1, bias=False):
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, padding=0, bias=bias)


def conv3x3(in_channels, out_channels, stride=1, bias=False):
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)


class ConvBNAct(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> optional activation, with named children."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1,
                 activation=nn.ReLU6):
        layers = OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                           padding=kernel_size // 2, groups=groups, bias=False),
            bn=nn.BatchNorm2d(out_channels),
        )
        if activation is not None:
            layers["act"] = activation(inplace=True)
        super().__init__(layers)


class ChainedResidualPool(nn.Module):
    """Light-Weight CRP: n x (5x5 max-pool, stride 1 -> 1x1 conv), each summed residually.

    The pooled branch is chained (each stage pools the previous stage's output) while the
    running sum accumulates every stage, as in Nekrasov et al. (2018), Fig. 2.
    """

    def __init__(self, channels, stages=4, kernel_size=5, conv=conv1x1):
        super().__init__()
        self.pool = nn.MaxPool2d(kernel_size, stride=1, padding=kernel_size // 2)
        self.convs = nn.ModuleList(conv(channels, channels) for _ in range(stages))

    def forward(self, x):
        branch = x
        for conv in self.convs:
            branch = conv(self.pool(branch))
            x = x + branch
        return x


def upsample_to(x, reference):
    """Bilinear resize of ``x`` to ``reference``'s spatial size (align_corners=True, as published)."""
    if x.shape[-2:] == reference.shape[-2:]:
        return x
    return F.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=True)
