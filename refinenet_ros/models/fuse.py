"""Inference copies of models: BatchNorm folded into convs, chained linear 1x1 convs merged,
dropout removed, channels_last memory format."""
import copy

import torch
import torch.nn as nn


@torch.no_grad()
def fold_batchnorm(conv, bn):
    """Return ``conv`` with ``bn`` (eval statistics) folded into its weight and bias."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    conv.weight.mul_(scale.reshape(-1, *([1] * (conv.weight.dim() - 1))))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    new_bias = (bias - bn.running_mean) * scale + bn.bias
    conv.bias = nn.Parameter(new_bias)
    return conv


@torch.no_grad()
def merge_linear_1x1(first, second):
    """One 1x1 conv equal to ``second(first(x))`` when nothing lies between them."""
    merged = nn.Conv2d(first.in_channels, second.out_channels, 1,
                       bias=first.bias is not None or second.bias is not None)
    w1, w2 = first.weight[:, :, 0, 0], second.weight[:, :, 0, 0]
    merged.weight.copy_((w2 @ w1)[:, :, None, None])
    if merged.bias is not None:
        b = torch.zeros(second.out_channels, dtype=w1.dtype, device=w1.device)
        if first.bias is not None:
            b += w2 @ first.bias
        if second.bias is not None:
            b += second.bias
        merged.bias.copy_(b)
    return merged.to(first.weight.device)


def _is_pointwise(m):
    return (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride == (1, 1)
            and m.groups == 1 and m.padding == (0, 0) and m.dilation == (1, 1))


def _fuse_children(module):
    children = dict(module.named_children())
    # Named pairs, as in torchvision's blocks: conv1/bn1, conv2/bn2 ...
    for name, child in children.items():
        if isinstance(child, nn.BatchNorm2d):
            conv_name = "conv" + name[2:] if name.startswith("bn") else None
            if conv_name in children and isinstance(children[conv_name], nn.Conv2d):
                fold_batchnorm(children[conv_name], child)
                setattr(module, name, nn.Identity())
    # Sequences: (Conv2d, BatchNorm2d) neighbours, and two pointwise convs in a row.
    if isinstance(module, nn.Sequential):
        names = list(children)
        for prev, name in zip(names, names[1:]):
            a, b = getattr(module, prev), getattr(module, name)
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                fold_batchnorm(a, b)
                setattr(module, name, nn.Identity())
        if len(names) == 2 and all(_is_pointwise(getattr(module, n)) for n in names):
            return merge_linear_1x1(getattr(module, names[0]), getattr(module, names[1]))
    for name, child in module.named_children():
        replacement = _fuse_children(child)
        if replacement is not child:
            setattr(module, name, replacement)
    if isinstance(module, nn.Dropout | nn.Dropout2d):
        return nn.Identity()
    return module


def fuse_for_inference(model):
    """Return a fused inference copy of ``model`` (the original is untouched).

    Every BatchNorm is folded into the conv before it, pairs of bias-free 1x1 convs with
    nothing between them become one conv, dropout disappears, parameters are frozen and
    the copy uses channels_last. Cast it with ``.to(dtype)`` for bf16/fp16. Its fp32 logits
    equal the original's (eval mode) to rounding error.
    """
    fused = copy.deepcopy(model).eval()
    fused = _fuse_children(fused)
    leftover = [n for n, m in fused.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if leftover:
        raise RuntimeError(f"fuse_for_inference: BatchNorm without a preceding conv: {leftover}")
    for p in fused.parameters():
        p.requires_grad_(False)
    return fused.to(memory_format=torch.channels_last)
