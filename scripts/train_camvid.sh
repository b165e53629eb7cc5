#!/usr/bin/env bash
# The CamVid recipe of the default model, by the standard protocol (docs/training.md). Resumable:
# run the same command again to continue from OUT/last.pth.
#   scripts/train_camvid.sh select runs/select   # train split only, validated on val every 5 epochs
#   scripts/train_camvid.sh final  runs/final    # train + val, nothing held out: what ships
# Further arguments go to refinenet-train and win over the recipe's (e.g. --amp auto
# --workers 8 on a GPU machine; torchrun: TORCHRUN="torchrun --standalone --nproc_per_node 4").
set -euo pipefail
cd "$(dirname "$0")/.."
stage=${1:-} out=${2:-}
if [[ ! $stage =~ ^(select|final)$ || -z $out ]]; then
  echo "usage: scripts/train_camvid.sh select|final OUT [refinenet-train arguments]" >&2
  exit 2
fi
shift 2
camvid=${REFINENET_SHARED:-../shared}/data/camvid
for file in "$camvid/train.txt" "$camvid/val.txt" "${REFINENET_SHARED:-../shared}/weights/mobilenet_v2_imagenet_torchvision.pth"; do
  [ -f "$file" ] || { echo "train_camvid.sh: $file is missing (set REFINENET_SHARED)" >&2; exit 2; }
done
scripts/setup.sh
source scripts/env.sh
if [ "$stage" = select ]; then
  data=(--train-list "$camvid/train.txt" --val-list "$camvid/val.txt" --val-every 5)
else
  data=(--train-list "$camvid/train.txt" "$camvid/val.txt")
fi
# shellcheck disable=SC2086
exec ${TORCHRUN:-python} -m refinenet_ros.training.train "${data[@]}" --num-classes 11 --ignore-index 11 \
  --encoder-weights "${REFINENET_SHARED:-../shared}/weights/mobilenet_v2_imagenet_torchvision.pth" \
  --out "$out" --epochs 50 --batch-size 8 --crop 360 480 --scale 0.5 1.75 --color-jitter 0.3 \
  --freeze-bn --optimizer adamw --lr 1e-3 --encoder-lr-mult 0.1 --weight-decay 0.01 \
  --warmup-iters 200 --class-weights auto --ohem 0.7 --ema 0.998 --amp off --workers 1 --threads 2 \
  --seed 0 --no-progress "$@"
