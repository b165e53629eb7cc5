"""RefineNet (Lin, Milan, Shen and Reid, "RefineNet: Multi-Path Refinement Networks for
High-Resolution Semantic Segmentation", CVPR 2017): the original 4-cascaded model on a
ResNet trunk.

Each RefineNet block refines one or two input paths:

* **adaptive convs**: 2 residual conv units (RCU: ReLU -> 3x3 conv -> ReLU -> 3x3 conv,
  + identity) per input path, at that path's width;
* **multi-resolution fusion**: a 3x3 conv per path to the smallest width, bilinear
  upsampling to the largest resolution, sum (skipped when there is one path);
* **chained residual pooling**: ReLU, then 4 x (5x5 max-pool stride 1 -> 3x3 conv) chained,
  each summed residually;
* **output conv**: one RCU.

RefineNet-4 takes the stride-32 ResNet features; RefineNet-3/2/1 take the stride-16/8/4
features and the previous block's output. Before the classifier come two extra RCUs.
ResNet features enter through a 3x3 conv (no bias) to the path width: 512 for the deepest
path, 256 for the others (the paper's "filter number for each input path"). Logits come
from a 3x3 conv with bias at output stride 4. Where the paper is silent, the released code
decides (guosheng/refinenet, and its PyTorch port by the same group): the 3x3 width
adaptation convs, the RCU's first conv having a bias and its second none, bias-free CRP
convs, dropout 0.5 on the two deepest ResNet outputs and before the classifier, and
PyTorch's default initialisation. This module graph is the released one, op for op: its
``mflow_conv_g*_b`` (3 RCUs) is our output RCU followed by the next block's 2 adaptive RCUs
on that path, and its final 3 RCUs are RefineNet-1's output RCU plus the 2 extra RCUs.

Parameters at 21 classes (measured; the trunk is torchvision's ResNet without ``fc``):
refinenet50 99,060,309; refinenet101 118,052,437; refinenet152 133,696,085.
RefineNet-101 is published at 118M parameters and 263 G multiply-adds at 512x512 (in the
Light-Weight RefineNet paper's comparison): ours is 118.05M and 262.9 G, so the published
model is this one; the 0.05M is below the published rounding. The decoder alone is 75.55M
(whatever the trunk), 58% of it in the 512-wide RefineNet-4 path (the 2048->512 3x3
adaptation conv is 9.4M, each 512-wide RCU 4.7M) -- which is what Light-Weight RefineNet
(46.3M for rf_lw101) removes with 1x1 convs and no RCUs.
"""
import torch.nn as nn
import torch.nn.functional as F

from .layers import ChainedResidualPool, conv3x3, upsample_to
from .resnet import ResNetEncoder


class ResidualConvUnit(nn.Module):
    """x + conv(ReLU(conv(ReLU(x)))), 3x3 convs at constant width (paper Fig. 2b)."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = conv3x3(channels, channels, bias=True)
        self.conv2 = conv3x3(channels, channels, bias=False)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


def residual_conv_units(channels, count):
    return nn.Sequential(*(ResidualConvUnit(channels) for _ in range(count)))


class RefineNetBlock(nn.Module):
    """One RefineNet block over ``len(path_channels)`` inputs, finest first."""

    def __init__(self, path_channels, out_channels, crp_stages=4):
        super().__init__()
        self.adaptive = nn.ModuleList(residual_conv_units(c, 2) for c in path_channels)
        # Multi-resolution fusion: one input goes through unchanged.
        self.fusion = (nn.ModuleList(conv3x3(c, out_channels) for c in path_channels)
                       if len(path_channels) > 1 else None)
        self.crp = ChainedResidualPool(out_channels, stages=crp_stages, conv=conv3x3)
        self.output_conv = ResidualConvUnit(out_channels)

    def forward(self, paths):
        paths = [adaptive(path) for adaptive, path in zip(self.adaptive, paths)]
        if self.fusion is None:
            x = paths[0]
        else:
            x = self.fusion[0](paths[0])
            for fuse, path in zip(self.fusion[1:], paths[1:]):
                x = x + upsample_to(fuse(path), x)
        return self.output_conv(self.crp(F.relu(x)))


class RefineNet(nn.Module):
    """ResNet trunk -> RefineNet-4..1 cascade -> 2 RCUs -> 3x3 classifier (stride 4)."""

    output_stride = 4

    def __init__(self, encoder, num_classes, widths=(512, 256, 256, 256), dropout=0.5):
        super().__init__()
        self.family = "refinenet"
        self.num_classes = num_classes
        self.encoder = encoder
        coarse_first = [c[0] for c in reversed(encoder.level_channels)]
        # 3x3 convs adapting each ResNet output (deepest first) to its path width.
        self.adapt = nn.ModuleList(conv3x3(c, w) for c, w in zip(coarse_first, widths))
        blocks = [RefineNetBlock([widths[0]], widths[0])]
        for previous, width in zip(widths, widths[1:]):
            blocks.append(RefineNetBlock([width, previous], width))
        self.blocks = nn.ModuleList(blocks)
        self.head = residual_conv_units(widths[-1], 2)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = conv3x3(widths[-1], num_classes, bias=True)

    def forward(self, x):
        features = [level[0] for level in reversed(self.encoder(x))]
        refined = self.blocks[0]([self.adapt[0](features[0])])
        for adapt, block, feature in zip(self.adapt[1:], self.blocks[1:], features[1:]):
            refined = block([adapt(feature), refined])
        return self.classifier(self.dropout(self.head(refined)))


def _refinenet(depth, num_classes):
    return RefineNet(ResNetEncoder(depth, dropout=0.5), num_classes)


def refinenet50(num_classes=21):
    """RefineNet on ResNet-50 (99,060,309 params at 21 classes)."""
    return _refinenet(50, num_classes)


def refinenet101(num_classes=21):
    """RefineNet on ResNet-101 (118,052,437 params at 21 classes; the paper says 118M)."""
    return _refinenet(101, num_classes)


def refinenet152(num_classes=21):
    """RefineNet on ResNet-152 (133,696,085 params at 21 classes)."""
    return _refinenet(152, num_classes)


__all__ = ["RefineNet", "RefineNetBlock", "ResidualConvUnit", "refinenet50", "refinenet101",
           "refinenet152"]
