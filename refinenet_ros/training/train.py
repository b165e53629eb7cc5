"""``refinenet-train``: train a segmentation model from ``image label`` list files.

Resumable (``OUT/last.pth`` every epoch), seeded, CPU or CUDA, bf16 autocast on CPUs that have it,
fp16 with loss scaling on CUDA. Encoder and decoder learning rates differ by
``--encoder-lr-mult`` (0.1, as in the Light-Weight RefineNet paper). Runs unchanged under
``torchrun --nproc_per_node N`` (DistributedDataParallel; the global ``--batch-size`` is split
across processes; rank 0 alone logs, validates and writes checkpoints).
"""
import copy
import json
import os
import re
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..models import (
    create_model,
    load_imagenet_encoder,
    normalize_images,
)
from . import distributed, metrics
from .data import (
    LabelValueError,
    SegmentationDataset,
    check_label_values,
    class_weights,
    worker_seed,
    worker_start_method,
)
from .evaluate import validate
from .loss import SegmentationLoss, WeightAverage
from .options import parse_args
from .optim import autocast_dtype, build_optimizer, lr_factor, set_bn_frozen


def save_atomic(obj, path):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(argv, description=__doc__)
    ctx, device = distributed.init(args.device)
    try:
        return Trainer(args, ctx, device).run()
    finally:
        distributed.finish(ctx)


class Trainer:
    """One training run: the model, its data, optimiser and state; ``run()`` does the epochs."""

    def __init__(self, args, ctx, device):
        if args.batch_size % ctx.world_size:
            sys.exit(f"refinenet-train: --batch-size {args.batch_size} does not split over "
                     f"{ctx.world_size} processes")
        self.args, self.ctx, self.device = args, ctx, device
        if args.threads:
            torch.set_num_threads(args.threads)
        torch.manual_seed(args.seed)  # the same initial weights in every process
        self.amp_dtype = autocast_dtype(args.amp, device)
        self.model = self._build_model()
        self._build_data()
        weights = None
        if args.class_weights == "auto":
            weights = class_weights(self.train_set, args.num_classes, args.ignore_index).to(device)
        self.criterion = SegmentationLoss(ctx, args.ignore_index, weights, ohem_threshold=args.ohem)
        self.optimizer = build_optimizer(self.model, args)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.ema = WeightAverage(self.model, args.ema) if args.ema else None
        self._ema_model = None  # built at the first validation with --ema
        self.total_iters = args.epochs * len(self.train_loader)
        if args.max_iters:
            self.total_iters = min(self.total_iters, args.max_iters)
        self.last_path = os.path.join(args.out, "last.pth")
        self.epoch, self.iteration, self.best = 0, 0, -1.0
        self._resume()
        self.net = distributed.wrap(ctx, self.model, device, bn_trains=not args.freeze_bn)

    def _build_model(self):
        args = self.args
        model = create_model(args.arch, args.num_classes)
        if args.encoder_weights == "imagenet":
            _load_torchvision_imagenet(model, args.arch)
        elif args.encoder_weights != "none":
            load_imagenet_encoder(model, args.encoder_weights)
        model.to(self.device).to(memory_format=torch.channels_last)
        if args.freeze_bn:
            set_bn_frozen(model)
        return model

    def _build_data(self):
        args, ctx = self.args, self.ctx
        self.train_set = SegmentationDataset(args.train_list, crop=args.crop, scale=args.scale,
                                             flip=not args.no_flip, color_jitter=args.color_jitter,
                                             ignore_index=args.ignore_index, limit=args.limit)
        self._check_labels(self.train_set.pairs)
        self.sampler = distributed.sampler(ctx, self.train_set, args.seed)
        # Reseeded every epoch (_seed_epoch), so workers are not persistent: each epoch's take
        # their seeds from it afresh.
        self.generator = torch.Generator()
        self.train_loader = DataLoader(
            self.train_set, batch_size=args.batch_size // ctx.world_size, sampler=self.sampler,
            shuffle=self.sampler is None, drop_last=True, num_workers=args.workers,
            worker_init_fn=worker_seed, generator=self.generator, pin_memory=self.device.type == "cuda",
            multiprocessing_context=worker_start_method(args.workers))
        if len(self.train_loader) == 0:
            sys.exit(f"refinenet-train: {len(self.train_set)} images are fewer than one batch of "
                     f"{args.batch_size}")
        if ctx.is_main:
            print(f"training on {len(self.train_set)} images of {', '.join(args.train_list)}"
                  f"{f', validating on {args.val_list}' if args.val_list else ''}", flush=True)
        self.val_loader = None
        if args.val_list and ctx.is_main:
            val_set = SegmentationDataset(args.val_list, ignore_index=args.ignore_index)
            self._check_labels(val_set.pairs)
            self.val_loader = DataLoader(val_set, batch_size=1, num_workers=min(args.workers, 1),
                                         multiprocessing_context=worker_start_method(args.workers))

    def _check_labels(self, pairs):
        """Before the first step: a stray label value would end in a device-side assert (CUDA)
        or a raw IndexError (CPU) in the middle of an epoch."""
        try:
            check_label_values(pairs, self.args.num_classes, self.args.ignore_index)
        except LabelValueError as exc:
            sys.exit(f"refinenet-train: {exc}")

    def _resume(self):
        if not os.path.exists(self.last_path):
            return
        # A last.pth copied between machines can arrive truncated or from another run: say so
        # and stop before anything is trained or written (save_atomic never leaves half a file).
        try:
            # On the CPU first: RNG states must be CPU tensors, and load_state_dict moves the rest.
            state = torch.load(self.last_path, map_location="cpu", weights_only=True)
            if state.get("arch", self.args.arch) != self.args.arch:
                raise ValueError(f"it is a checkpoint of --arch {state['arch']}, not {self.args.arch}")
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.ema is not None:
                self.ema.load_state_dict(state.get("ema", state["model"]))
            self.epoch, self.iteration, self.best = state["epoch"], state["iteration"], state["best_miou"]
            torch.set_rng_state(state["torch_rng"])
            if self.device.type == "cuda" and "cuda_rng" in state:
                torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        except Exception as err:  # torch.load and load_state_dict raise many kinds
            reason = " ".join(str(err).split())[:400]  # load_state_dict lists every key: its start will do
            sys.exit(f"refinenet-train: cannot resume from {self.last_path}: {type(err).__name__}: "
                     f"{reason} (move it away to start afresh)")
        if self.ctx.is_main:
            print(f"resumed from {self.last_path} at epoch {self.epoch}", flush=True)

    def run(self):
        if self.ctx.is_main:
            os.makedirs(self.args.out, exist_ok=True)
        while self.epoch < self.args.epochs and self.iteration < self.total_iters:
            self._seed_epoch()
            record = self._train_epoch()
            self.epoch += 1
            if self.ctx.is_main:
                self._end_epoch(record)
            distributed.barrier(self.ctx)
        if self.ctx.is_main:
            final = {"model": self._shipped_state(), "arch": self.args.arch, "num_classes": self.args.num_classes}
            save_atomic(final, os.path.join(self.args.out, "final.pth"))
            print(f"done: {self.iteration} iterations; weights in "
                  f"{os.path.join(self.args.out, 'final.pth')}", flush=True)
        return 0

    def _seed_epoch(self):
        """This epoch's random streams from (seed, rank, epoch): resuming repeats nothing."""
        seed = int(np.random.SeedSequence([self.args.seed, self.ctx.rank, self.epoch]).generate_state(1)[0])
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch)  # the order: the same in every process
        self.generator.manual_seed(seed)  # shuffle order (one process) and the workers' seeds
        np.random.seed(seed)  # augmentation with --workers 0

    def _train_epoch(self):
        args, device = self.args, self.device
        self.net.train()
        if args.freeze_bn:
            set_bn_frozen(self.model)
        losses, started = [], time.time()
        bar = tqdm(self.train_loader, desc=f"epoch {self.epoch + 1}/{args.epochs}", file=sys.stdout,
                   disable=args.no_progress or not self.ctx.is_main, dynamic_ncols=True)
        for images, labels in bar:
            factor = lr_factor(args, self.iteration, self.total_iters)
            for group in self.optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            images = normalize_images(images.to(device, non_blocking=True)).contiguous(
                memory_format=torch.channels_last)
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                logits = self.net(images)
            logits = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear",
                                   align_corners=False)
            loss = self.criterion(logits, labels)
            if not torch.isfinite(loss):
                sys.exit(f"refinenet-train: loss became {loss.item()} at iteration {self.iteration}; "
                         f"lower --lr (last good checkpoint: {self.last_path})")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.ema is not None:
                self.ema.update(self.model)
            losses.append(loss.item())
            self.iteration += 1
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}",
                            lr=f"{self.optimizer.param_groups[1]['lr']:.2e}")
            if self.iteration >= self.total_iters:
                break
        return {"epoch": self.epoch + 1, "iteration": self.iteration, "loss": float(np.mean(losses)),
                "seconds": round(time.time() - started, 1)}

    def _end_epoch(self, record):
        """Rank 0: validate when due, keep the best, write last.pth and the log line."""
        args = self.args
        last_epoch = self.epoch == args.epochs or self.iteration >= self.total_iters
        if self.val_loader is not None and (self.epoch % args.val_every == 0 or last_epoch):
            self._validate(record)
        print(_epoch_line(self.epoch, record), flush=True)
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "epoch": self.epoch, "iteration": self.iteration, "best_miou": self.best,
                 "arch": args.arch, "torch_rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        save_atomic(state, self.last_path)
        with open(os.path.join(args.out, "log.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    def _validate(self, record):
        """Scores of the shipped weights into ``record``, and with --ema the raw weights' mIoU
        (what averaging gains); the best so far goes to best.pth."""
        args = self.args

        def scores(model):
            return metrics.scores(validate(model, self.val_loader, args.num_classes, args.ignore_index,
                                           self.device, self.amp_dtype))
        result = scores(self._eval_model())
        record.update(val_miou=result["miou"], val_pixel_accuracy=result["pixel_accuracy"],
                      val_iou=result["iou"])
        if self.ema is not None:
            record["val_miou_raw"] = scores(self.model)["miou"]
        if result["miou"] > self.best:
            self.best = result["miou"]
            save_atomic({"model": self._shipped_state(), "arch": args.arch, "epoch": self.epoch,
                         "val_miou": self.best}, os.path.join(args.out, "best.pth"))

    def _shipped_state(self):
        """The weights evaluated and shipped: the moving average when --ema is on."""
        return self.ema.state_dict() if self.ema is not None else self.model.state_dict()

    def _eval_model(self):
        if self.ema is None:
            return self.model
        if self._ema_model is None:
            self._ema_model = copy.deepcopy(self.model)
        self._ema_model.load_state_dict(self.ema.state_dict())
        return self._ema_model


def _epoch_line(epoch, record):
    line = f"epoch {epoch}: loss {record['loss']:.4f}"
    if "val_miou" in record:
        line += f"  val mIoU {100 * record['val_miou']:.2f}%"
        if "val_miou_raw" in record:
            line += f" (raw weights {100 * record['val_miou_raw']:.2f}%)"
        line += f"  pixel acc {100 * record['val_pixel_accuracy']:.2f}%"
    return line


def _load_torchvision_imagenet(model, arch):
    """Download torchvision's IMAGENET1K_V1 weights (needs a connected machine)."""
    from torchvision import models as tvm
    if arch == "mbv2":
        weights = tvm.MobileNet_V2_Weights.IMAGENET1K_V1
    else:  # every other arch sits on a ResNet trunk named by its trailing depth
        depth = int(re.search(r"(\d+)$", arch).group(1))
        weights = getattr(tvm, f"ResNet{depth}_Weights").IMAGENET1K_V1
    state_dict = weights.get_state_dict(progress=True)
    path = os.path.join(torch.hub.get_dir(), f"{arch}_imagenet_state_dict.pth")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(state_dict, path)
    load_imagenet_encoder(model, path)


if __name__ == "__main__":
    sys.exit(main())
