"""Global Convolutional Network with Boundary Refinement (Peng, Zhang, Yu, Luo and Sun,
"Large Kernel Matters -- Improve Semantic Segmentation by Global Convolutional Network",
CVPR 2017), on a ResNet trunk.

At each of the four ResNet stages (strides 4, 8, 16, 32):

* **global convolution** (GCN, paper Fig. 2b): the sum of a (k x 1 -> 1 x k) and a
  (1 x k -> k x 1) conv branch straight to class scores -- a dense k x k receptive field
  for 2k instead of k^2 weights per channel pair, with no BatchNorm and no non-linearity
  (the paper's choice), k = 15 by default;
* **boundary refinement** (BR, Fig. 2c): ``x + conv3x3(ReLU(conv3x3(x)))`` on the scores.

Score maps are then merged coarse to fine (Fig. 2a): the coarser map is upsampled x2 by a
deconvolution and added to the finer one, followed by a BR; from stride 4 two more
deconvolution + BR steps reach full resolution, so ``output_stride`` is 1 (9 BRs and 5
deconvolutions in all). The deconvolutions are learnable 4x4 stride-2 transposed convs
initialised to bilinear interpolation, as in FCN; their output (2x the coarse size) is
cropped to the finer map, which for ResNet's ceil-halving strides is never larger than
that, so odd input sizes work. Where the paper is silent: convs have biases (nothing
normalises them), deconvolutions none, no dropout, PyTorch's default initialisation.

Only the trunk has BatchNorm, so :func:`fuse_for_inference` folds all of it.
Parameters at 21 classes, k = 15 (measured): gcn50 26,087,588; gcn101 45,079,716;
gcn152 60,723,364 -- the decoder is 2.58M (1.29M of it the stride-32 GCN over 2048
channels), the rest is the torchvision trunk without ``fc``.
"""
import torch
import torch.nn as nn

from .resnet import ResNetEncoder


class GlobalConvolution(nn.Module):
    """(k x 1 -> 1 x k) + (1 x k -> k x 1): a separable-in-space k x k conv, no activation."""

    def __init__(self, in_channels, out_channels, kernel_size):
        super().__init__()
        k, pad = kernel_size, kernel_size // 2
        self.left = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, (k, 1), padding=(pad, 0)),
            nn.Conv2d(out_channels, out_channels, (1, k), padding=(0, pad)))
        self.right = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, (1, k), padding=(0, pad)),
            nn.Conv2d(out_channels, out_channels, (k, 1), padding=(pad, 0)))

    def forward(self, x):
        return self.left(x) + self.right(x)


class BoundaryRefinement(nn.Module):
    """x + conv3x3(ReLU(conv3x3(x))): a residual that sharpens score-map boundaries."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(self.relu(self.conv1(x)))


class Upsample2x(nn.Module):
    """Learnable x2 deconvolution, initialised to bilinear interpolation, cropped to ``size``."""

    def __init__(self, channels):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1, bias=False)
        with torch.no_grad():
            taps = torch.tensor([0.25, 0.75, 0.75, 0.25])
            self.deconv.weight.zero_()
            for c in range(channels):
                self.deconv.weight[c, c] = taps[:, None] * taps[None, :]

    def forward(self, x, size):
        # 2 * ceil(n / 2) >= n: the crop never has to invent pixels.
        return self.deconv(x)[..., :size[0], :size[1]]


class GCN(nn.Module):
    """ResNet trunk -> GCN + BR per stage -> deconv/sum/BR coarse to fine -> full-resolution logits."""

    output_stride = 1

    def __init__(self, encoder, num_classes, kernel_size=15):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"GCN kernel_size must be a positive odd integer, got {kernel_size}")
        self.family = "gcn"
        self.num_classes = num_classes
        self.kernel_size = kernel_size
        self.encoder = encoder
        coarse_first = [c[0] for c in reversed(encoder.level_channels)]
        self.gcns = nn.ModuleList(GlobalConvolution(c, num_classes, kernel_size) for c in coarse_first)
        self.lateral_refine = nn.ModuleList(BoundaryRefinement(num_classes) for _ in coarse_first)
        self.fused_refine = nn.ModuleList(BoundaryRefinement(num_classes) for _ in coarse_first[1:])
        self.final_refine = nn.ModuleList(BoundaryRefinement(num_classes) for _ in range(2))
        # 3 upsamplings between stages, then stride 4 -> 2 -> 1.
        self.upsample = nn.ModuleList(Upsample2x(num_classes) for _ in range(len(coarse_first) + 1))

    def forward(self, x):
        full_size = x.shape[-2:]
        half_size = ((full_size[0] + 1) // 2, (full_size[1] + 1) // 2)  # the stride-2 stem's output
        features = [level[0] for level in reversed(self.encoder(x))]
        scores = self.lateral_refine[0](self.gcns[0](features[0]))
        for gcn, lateral_refine, fused_refine, upsample, feature in zip(
                self.gcns[1:], self.lateral_refine[1:], self.fused_refine, self.upsample, features[1:]):
            lateral = lateral_refine(gcn(feature))
            scores = fused_refine(lateral + upsample(scores, lateral.shape[-2:]))
        scores = self.final_refine[0](self.upsample[-2](scores, half_size))
        return self.final_refine[1](self.upsample[-1](scores, full_size))


def _gcn(depth, num_classes, kernel_size):
    return GCN(ResNetEncoder(depth), num_classes, kernel_size)


def gcn50(num_classes=21, kernel_size=15):
    """GCN + BR on ResNet-50 (26,087,588 params at 21 classes, k = 15)."""
    return _gcn(50, num_classes, kernel_size)


def gcn101(num_classes=21, kernel_size=15):
    """GCN + BR on ResNet-101 (45,079,716 params at 21 classes, k = 15)."""
    return _gcn(101, num_classes, kernel_size)


def gcn152(num_classes=21, kernel_size=15):
    """GCN + BR on ResNet-152 (60,723,364 params at 21 classes, k = 15)."""
    return _gcn(152, num_classes, kernel_size)
