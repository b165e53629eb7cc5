"""ResNet trunks (torchvision's ResNet, classifier removed) for the RefineNet family."""
import torch.nn as nn

_DEPTHS = (50, 101, 152)


class ResNetEncoder(nn.Module):
    """torchvision ResNet without avgpool/fc; returns ``[[l1], [l2], [l3], [l4]]``.

    Module names equal torchvision's (``conv1``, ``bn1``, ``layer1`` ...), so torchvision
    ``IMAGENET1K_V1`` state_dicts load directly (their ``fc.*`` keys are dropped).
    ``dropout`` is applied to the two deepest outputs in training, as in Light-Weight
    RefineNet's ResNet models.
    """

    output_strides = (4, 8, 16, 32)
    level_channels = ((256,), (512,), (1024,), (2048,))

    def __init__(self, depth, dropout=0.0):
        super().__init__()
        if depth not in _DEPTHS:
            raise ValueError(f"ResNet depth must be one of {_DEPTHS}, got {depth}")
        # Imported here: torchvision pulls in torch._dynamo, slowing every start-up that
        # only needs the MobileNet-v2 model.
        from torchvision.models import resnet
        trunk = getattr(resnet, f"resnet{depth}")(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        l1 = self.layer1(x)
        l2 = self.layer2(l1)
        l3 = self.layer3(l2)
        l4 = self.layer4(l3)
        return [[l1], [l2], [self.dropout(l3)], [self.dropout(l4)]]


def load_torchvision_resnet(encoder, state_dict):
    """Initialise ``encoder`` from a torchvision ResNet state_dict (strict, ``fc`` dropped)."""
    trunk = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
    encoder.load_state_dict(trunk, strict=True)
