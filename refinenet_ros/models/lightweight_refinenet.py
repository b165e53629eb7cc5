"""Light-Weight RefineNet (Nekrasov, Shen and Reid, BMVC 2018).

A 4-level decoder over an encoder's stride-4/8/16/32 features. Every level sums 1x1
projections of its encoder features and the upsampled output of the coarser level, applies
the activation, a light-weight chained residual pool (5x5 max-pool + 1x1 conv, x4) and,
except at the finest level, a 1x1 conv to 256 channels. A 3x3 conv with bias classifies the
stride-4 map, so logits are ``ceil(H/4) x ceil(W/4)``.
"""
import torch.nn as nn

from .layers import ChainedResidualPool, conv1x1, conv3x3, upsample_to
from .mobilenetv2 import MobileNetV2Encoder
from .resnet import ResNetEncoder


class RefineLevel(nn.Module):
    def __init__(self, in_channels, width, out_channels, lateral_depth, activation):
        super().__init__()
        self.laterals = nn.ModuleList(
            _lateral(c, width, lateral_depth) for c in in_channels)
        self.act = activation(inplace=True)
        self.crp = ChainedResidualPool(width)
        self.project = conv1x1(width, out_channels) if out_channels else None

    def forward(self, features, coarser=None):
        x = self.laterals[0](features[0])
        for lateral, feature in zip(self.laterals[1:], features[1:]):
            x = x + lateral(feature)
        if coarser is not None:
            x = x + upsample_to(coarser, x)
        x = self.crp(self.act(x))
        return self.project(x) if self.project is not None else x


def _lateral(in_channels, width, depth):
    # ResNet models project with two bias-free 1x1 convs in a row ("dimred" then "adapt");
    # fuse_for_inference merges them into one.
    if depth == 1:
        return conv1x1(in_channels, width)
    return nn.Sequential(conv1x1(in_channels, width), conv1x1(width, width))


class LightWeightDecoder(nn.Module):
    """``levels[0]`` is the coarsest (stride 32); the last one outputs stride-4 features."""

    def __init__(self, level_channels, widths, lateral_depths, activation):
        super().__init__()
        coarse_first = list(reversed(level_channels))
        levels = []
        for i, channels in enumerate(coarse_first):
            out = widths[i + 1] if i + 1 < len(widths) else None
            levels.append(RefineLevel(channels, widths[i], out, lateral_depths[i], activation))
        self.levels = nn.ModuleList(levels)
        self.out_channels = widths[-1]

    def forward(self, features):
        x = None
        for level, level_features in zip(self.levels, reversed(features)):
            x = level(level_features, x)
        return x


class LightWeightRefineNet(nn.Module):
    """Encoder -> light-weight decoder -> 3x3 classifier; logits at output stride 4."""

    output_stride = 4

    def __init__(self, encoder, decoder, num_classes, family):
        super().__init__()
        self.family = family
        self.num_classes = num_classes
        self.encoder = encoder
        self.decoder = decoder
        self.classifier = conv3x3(decoder.out_channels, num_classes, bias=True)
        _init_decoder(self.decoder, self.classifier)

    def forward(self, x):
        return self.classifier(self.decoder(self.encoder(x)))


def _init_decoder(*modules):
    for module in modules:
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)  # as upstream; larger inits blow up the CRP sums
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


def mbv2_lw(num_classes=21):
    """Light-Weight RefineNet with the MobileNet-v2 encoder (3,284,565 params at 21 classes)."""
    decoder = LightWeightDecoder(MobileNetV2Encoder.level_channels, (256, 256, 256, 256),
                                 (1, 1, 1, 1), nn.ReLU6)
    return LightWeightRefineNet(MobileNetV2Encoder(), decoder, num_classes, "mbv2")


def _resnet_lw(depth, num_classes):
    encoder = ResNetEncoder(depth, dropout=0.5)
    decoder = LightWeightDecoder(ResNetEncoder.level_channels, (512, 256, 256, 256),
                                 (1, 2, 2, 2), nn.ReLU)
    return LightWeightRefineNet(encoder, decoder, num_classes, "resnet")


def rf_lw50(num_classes=21):
    """Light-Weight RefineNet-50 (27,357,525 params at 21 classes)."""
    return _resnet_lw(50, num_classes)


def rf_lw101(num_classes=21):
    """Light-Weight RefineNet-101 (46,349,653 params at 21 classes)."""
    return _resnet_lw(101, num_classes)


def rf_lw152(num_classes=21):
    """Light-Weight RefineNet-152 (61,993,301 params at 21 classes)."""
    return _resnet_lw(152, num_classes)
