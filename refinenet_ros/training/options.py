"""The command line of ``refinenet-train`` (:mod:`.train`): every option and its default."""
import argparse

from ..models import available_archs


def parse_args(argv=None, description=None):
    """``refinenet-train``'s arguments (``description``: its --help text)."""
    p = argparse.ArgumentParser(prog="refinenet-train", description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--train-list", required=True, nargs="+", metavar="LIST",
                   help="list file(s) of 'IMAGE LABEL' lines; several are joined (train + val)")
    p.add_argument("--val-list", help="validation list file (mIoU per --val-every epochs)")
    p.add_argument("--arch", default="mbv2", choices=available_archs())
    p.add_argument("--num-classes", type=int, required=True)
    p.add_argument("--ignore-index", type=int, default=255)
    p.add_argument("--encoder-weights", default="none",
                   help="torchvision ImageNet state_dict file, 'imagenet' (download), or 'none'")
    p.add_argument("--out", required=True, help="output folder for checkpoints and log")
    p.add_argument("--epochs", type=int, default=80)
    p.add_argument("--batch-size", type=int, default=8,
                   help="global batch; split evenly across torchrun processes")
    p.add_argument("--crop", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    p.add_argument("--scale", type=float, nargs=2, default=(0.5, 2.0), metavar=("MIN", "MAX"))
    p.add_argument("--no-flip", action="store_true")
    p.add_argument("--color-jitter", type=float, default=0.2)
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    p.add_argument("--lr", type=float, default=5e-3, help="decoder learning rate")
    p.add_argument("--encoder-lr-mult", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=1e-5)
    p.add_argument("--schedule", choices=("poly", "cosine"), default="poly")
    p.add_argument("--warmup-iters", type=int, default=0)
    p.add_argument("--freeze-bn", action="store_true", help="keep BatchNorm statistics and affine fixed")
    p.add_argument("--class-weights", choices=("none", "auto"), default="none",
                   help="'auto': inverse sqrt class frequency of the training labels")
    p.add_argument("--ohem", type=float, default=0.0, metavar="P",
                   help="online hard example mining: train only on pixels whose top-class "
                        "probability is below P (at least 1/16 of them); 0 = off")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="evaluate and save an exponential moving average of the weights "
                        "(e.g. 0.999 per step); 0 = off")
    p.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"), default="auto",
                   help="auto: fp16 on CUDA, bf16 on CPUs with AMX/AVX512-BF16, else fp32 (off)")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-every", type=int, default=1)
    p.add_argument("--max-iters", type=int, default=0, help="stop after this many iterations (tests)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)
