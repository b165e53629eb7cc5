"""Optimiser, learning-rate schedule, mixed precision and BatchNorm freezing for refinenet-train."""
import torch
import torch.nn as nn

from ..engine.hardware.cpu import NATIVE_BF16_FLAGS, cpu_info
from .data import cosine_factor, poly_factor


def autocast_dtype(amp, device, flags=None):
    """The autocast dtype of ``--amp`` (None = fp32). ``auto``: fp16 on CUDA; on a CPU bf16
    only where it is native (AMX / AVX512-BF16): elsewhere it is emulated and far slower than
    fp32 (docs/training.md has the measurements). ``flags``: CPU flags (engine/hardware/cpu.py's when None)."""
    if amp == "off":
        return None
    if amp == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if NATIVE_BF16_FLAGS & (cpu_info().flags if flags is None else set(flags)) else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def set_bn_frozen(model):
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


def build_optimizer(model, args):
    encoder = [p for p in model.encoder.parameters() if p.requires_grad]
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in encoder_ids]
    groups = [{"params": encoder, "lr": args.lr * args.encoder_lr_mult, "base_lr": args.lr * args.encoder_lr_mult},
              {"params": rest, "lr": args.lr, "base_lr": args.lr}]
    if args.optimizer == "sgd":
        return torch.optim.SGD(groups, momentum=args.momentum, weight_decay=args.weight_decay)
    return torch.optim.AdamW(groups, weight_decay=args.weight_decay)


def lr_factor(args, iteration, total):
    if args.warmup_iters and iteration < args.warmup_iters:
        return (iteration + 1) / args.warmup_iters
    fn = poly_factor if args.schedule == "poly" else cosine_factor
    return fn(iteration, total)
