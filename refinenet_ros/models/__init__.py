"""Segmentation models (pure PyTorch, no ROS).

Inputs are float NCHW RGB tensors scaled to [0, 1] and normalised with ImageNet mean/std
(:data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`); outputs are logits at the model's
``output_stride`` (``ceil(H/s) x ceil(W/s)``).
"""
import importlib

import torch

from ..choices import ARCH_BUILDERS, ARCHS, IMAGENET_MEAN, IMAGENET_STD
from .checkpoint import (
    CheckpointError,
    from_official_layout,
    load_checkpoint,
    num_classes_in,
    read_state_dict,
    to_official_layout,
)
from .fuse import fuse_for_inference
from .mobilenetv2 import MobileNetV2Encoder, load_torchvision_mobilenet_v2
from .resnet import ResNetEncoder, load_torchvision_resnet


MODEL_BUILDERS = {  # name -> builder, as choices.ARCH_BUILDERS places them
    name: getattr(importlib.import_module(f".{module}", __name__), function)
    for name, (module, _, function) in ((n, where.partition(":")) for n, where in ARCH_BUILDERS.items())
}


def normalize_images(images, dtype=torch.float32):
    """uint8 (or 0-255 float) NCHW RGB -> ImageNet-normalised ``dtype`` tensor, on its device."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=torch.float32).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=images.device, dtype=torch.float32).view(1, 3, 1, 1) * 255
    return ((images.float() - mean) / std).to(dtype)


def available_archs():
    return list(ARCHS)


def create_model(arch, num_classes=21, **kwargs):
    """Build an untrained model by name (see :func:`available_archs`)."""
    if arch not in MODEL_BUILDERS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(available_archs())}")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return MODEL_BUILDERS[arch](num_classes=int(num_classes), **kwargs)


def load_imagenet_encoder(model, path):
    """Initialise ``model.encoder`` from a torchvision ImageNet classifier state_dict file
    (``mobilenet_v2`` or ``resnet50/101/152`` ``IMAGENET1K_V1`` layout), strictly."""
    state_dict = read_state_dict(path)
    encoder = model.encoder
    try:
        if isinstance(encoder, MobileNetV2Encoder):
            load_torchvision_mobilenet_v2(encoder, state_dict)
        elif isinstance(encoder, ResNetEncoder):
            load_torchvision_resnet(encoder, state_dict)
        else:
            raise CheckpointError(f"{type(encoder).__name__} has no ImageNet initialiser")
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a torchvision ImageNet state_dict for "
                              f"{type(encoder).__name__}: {exc}") from exc
    return model


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "MODEL_BUILDERS", "CheckpointError", "available_archs",
    "count_parameters", "create_model", "fuse_for_inference", "from_official_layout",
    "load_checkpoint", "load_imagenet_encoder", "normalize_images", "num_classes_in", "read_state_dict",
    "to_official_layout",
]
