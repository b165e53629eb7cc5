"""MobileNet-v2 encoder as used by Light-Weight RefineNet (Nekrasov et al., BMVC 2018).

Differs from torchvision's classifier in two published details: the first block (t=1)
keeps its 1x1 expansion conv, and there is no 1280-channel head.
"""
import torch
import torch.nn as nn

from .layers import ConvBNAct

# (expansion t, output channels c, repeats n, first stride s), Sandler et al. (2018), Table 2.
MOBILENET_V2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32


class InvertedResidual(nn.Module):
    def __init__(self, in_channels, out_channels, expansion, stride):
        super().__init__()
        hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        self.expand = ConvBNAct(in_channels, hidden, 1)
        self.depthwise = ConvBNAct(hidden, hidden, 3, stride=stride, groups=hidden)
        self.project = ConvBNAct(hidden, out_channels, 1, activation=None)

    def forward(self, x):
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.use_residual else out


class MobileNetV2Encoder(nn.Module):
    """Returns features grouped by decoder level, finest first: strides 4, 8, 16, 32.

    Level 16 holds two stages (64 and 96 channels) and level 32 two (160 and 320), which the
    light-weight decoder sums after their 1x1 projections.
    """

    output_strides = (4, 8, 16, 32)
    level_channels = ((24,), (32,), (64, 96), (160, 320))
    # Which stages (index into MOBILENET_V2_STAGES) feed each decoder level.
    _level_stages = ((1,), (2,), (3, 4), (5, 6))

    def __init__(self):
        super().__init__()
        self.stem = ConvBNAct(3, STEM_CHANNELS, 3, stride=2)
        stages, in_channels = [], STEM_CHANNELS
        for expansion, out_channels, repeats, stride in MOBILENET_V2_STAGES:
            blocks = []
            for i in range(repeats):
                blocks.append(InvertedResidual(in_channels, out_channels, expansion,
                                               stride if i == 0 else 1))
                in_channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)

    def forward(self, x):
        x = self.stem(x)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return [[outputs[i] for i in level] for level in self._level_stages]


def _torchvision_block_index():
    """Yield (stage, block, torchvision features index) for every inverted residual block."""
    index = 1
    for stage, (_, _, repeats, _) in enumerate(MOBILENET_V2_STAGES):
        for block in range(repeats):
            yield stage, block, index
            index += 1


def load_torchvision_mobilenet_v2(encoder, state_dict):
    """Initialise ``encoder`` from a torchvision ``mobilenet_v2`` state_dict (strict).

    torchvision's t=1 block has no expansion conv; ours does, so it starts as an identity
    (identity 1x1 kernel, BatchNorm that passes values through), which keeps the
    pretrained function unchanged: its input is already ReLU6-clipped.
    """
    mapped = {}

    def take(conv_key, dst_prefix, bn_key):
        for src, dst in [(f"{conv_key}.weight", f"{dst_prefix}.conv.weight")] + [
                (f"{bn_key}.{n}", f"{dst_prefix}.bn.{n}") for n in _BN_TENSORS]:
            if src not in state_dict:
                raise KeyError(f"torchvision MobileNet-v2 state_dict lacks {src!r}")
            mapped[dst] = state_dict[src]

    take("features.0.0", "stem", "features.0.1")
    for stage, block, index in _torchvision_block_index():
        src, dst = f"features.{index}.conv", f"stages.{stage}.{block}"
        if MOBILENET_V2_STAGES[stage][0] == 1:
            take(f"{src}.0.0", f"{dst}.depthwise", f"{src}.0.1")
            take(f"{src}.1", f"{dst}.project", f"{src}.2")
            _identity_expand(encoder.stages[stage][block].expand, mapped, f"{dst}.expand")
        else:
            take(f"{src}.0.0", f"{dst}.expand", f"{src}.0.1")
            take(f"{src}.1.0", f"{dst}.depthwise", f"{src}.1.1")
            take(f"{src}.2", f"{dst}.project", f"{src}.3")
    encoder.load_state_dict(mapped, strict=True)


_BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _identity_expand(module, mapped, prefix):
    conv, bn = module.conv, module.bn
    channels = conv.out_channels
    mapped[f"{prefix}.conv.weight"] = torch.eye(channels).reshape(channels, channels, 1, 1)
    mapped[f"{prefix}.bn.weight"] = torch.ones(channels)
    mapped[f"{prefix}.bn.bias"] = torch.zeros(channels)
    mapped[f"{prefix}.bn.running_mean"] = torch.zeros(channels)
    mapped[f"{prefix}.bn.running_var"] = torch.full((channels,), 1.0 - bn.eps)
    mapped[f"{prefix}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
