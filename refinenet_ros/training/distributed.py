"""Data-parallel training under ``torchrun`` (one process per GPU, or per CPU socket).

``torchrun`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; without them everything here is a
no-op for a single process, so ``refinenet-train`` runs the same way with or without it.
Multi-node works through torchrun's own flags (``--nnodes``, ``--rdzv-endpoint``).
"""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from ..engine.hardware.precision import resolve_device


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self):
        return self.world_size > 1

    @property
    def is_main(self):
        return self.rank == 0


def init(device_name):
    """Join the process group torchrun describes; return ``(Context, torch.device)``.

    gloo on CPUs, NCCL on CUDA; each process takes the GPU of its local rank.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Context(), _device(device_name, 0)
    ctx = Context(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    device = _device(device_name, ctx.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return ctx, device


def _device(name, local_rank):
    """The engine's device rule, with "auto"/"cuda" taking this process's local GPU."""
    if name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return resolve_device(name)


def sampler(ctx, dataset, seed):
    """A DistributedSampler that splits the shuffled epoch across ranks, or None alone."""
    if not ctx.distributed:
        return None
    return DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                              seed=seed, drop_last=True)


def wrap(ctx, model, device, bn_trains):
    """DistributedDataParallel around ``model``; BatchNorm synchronised where it trains.

    PyTorch's SyncBatchNorm runs on CUDA only: on CPUs each process normalises with its own
    batch statistics (say so once), which is exact with ``--freeze-bn``.
    """
    if not ctx.distributed:
        return model
    if bn_trains:
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif ctx.is_main:
            print("refinenet-train: BatchNorm trains with per-process statistics "
                  "(SyncBatchNorm needs CUDA)", flush=True)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_reduce_sum(ctx, value):
    """Sum a tensor over all ranks (in place); unchanged for a single process."""
    if ctx.distributed:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def barrier(ctx):
    if ctx.distributed:
        dist.barrier()


def finish(ctx):
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
