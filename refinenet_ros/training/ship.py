"""Turn a training checkpoint into shipped weights: a bare fp16 state_dict (half the size;
the engine loads it into fp32 or casts as configured), checked to load strictly.

    python -m refinenet_ros.training.ship --checkpoint runs/x/final.pth --arch mbv2 \
        --output models/camvid_mbv2.pth
"""
import argparse
import os
import sys

import torch

from ..models import create_model, load_checkpoint, num_classes_in, read_state_dict


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refinenet_ros.training.ship", description=__doc__)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--arch", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--fp32", action="store_true", help="keep fp32 instead of fp16")
    args = p.parse_args(argv)
    state_dict = read_state_dict(args.checkpoint)
    model = load_checkpoint(create_model(args.arch, num_classes_in(state_dict)), state_dict)
    dtype = torch.float32 if args.fp32 else torch.float16
    shipped = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    tmp = args.output + ".tmp"
    torch.save(shipped, tmp)
    load_checkpoint(create_model(args.arch, num_classes_in(shipped)), tmp)  # strict check of the file
    os.replace(tmp, args.output)
    print(f"wrote {args.output} ({os.path.getsize(args.output) / 1e6:.1f} MB, {dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
