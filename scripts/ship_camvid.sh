#!/usr/bin/env bash
# Ships the default model from the two runs of scripts/train_camvid.sh (docs/training.md):
#   scripts/ship_camvid.sh runs/select runs/final
#   scripts/ship_camvid.sh runs/select     # steps 1-2 only: the verdict, before the final run ends
# 1. the recipe's verdict: SELECT/final.pth (train only) shipped into a models folder of its own
#    (SELECT/ship/models) and measured there exactly as the shipped model is, with
#    `refinenet-eval --weights default` on CamVid val (fp32, single scale); below BAR (default
#    0.7165: the old model's 69.65% + 2 points) nothing is shipped;
# 2. its int8 export on val too: the int8 recipe on data it was not trained on;
# 3. FINAL/final.pth (train+val) -> models/camvid_mbv2.pth (fp16), the metadata's evaluation from
#    step 1 (val is not held out for the shipped weights, and the metadata says so), and
#    models/camvid_mbv2_int8.onnx re-calibrated on train frames (refused below 99% agreement).
# Results go to SELECT/ship/*.json; the model card in README.md is written from them. A verdict
# newer than SELECT/final.pth is reused (the selection run's weights have not changed since).
set -euo pipefail
cd "$(dirname "$0")/.."
select=${1:-} final=${2:-}
if [[ -z $select ]]; then
  echo "usage: scripts/ship_camvid.sh SELECT_OUT [FINAL_OUT]" >&2
  exit 2
fi
for file in "$select/final.pth" ${final:+"$final/final.pth"}; do
  [ -f "$file" ] || { echo "ship_camvid.sh: $file is missing (did the run finish?)" >&2; exit 2; }
done
camvid=${REFINENET_SHARED:-../shared}/data/camvid
bar=${BAR:-0.7165}
scripts/setup.sh
source scripts/env.sh
out=$select/ship
candidate=$out/models
mkdir -p "$candidate"
cp models/camvid_mbv2.json "$candidate/"
eval_val=(refinenet-eval --list "$camvid/val.txt" --weights default --ignore-index 11 --device cpu)
int8_export=(refinenet-export --weights default --dynamic --int8 "$camvid/train.txt" --json)

measure_verdict() {
  python -m refinenet_ros.training.ship --checkpoint "$select/final.pth" --arch mbv2 \
    --output "$candidate/camvid_mbv2.pth"
  REFINENET_ROS_MODELS=$candidate "${eval_val[@]}" --precision fp32 --json "$out/select_val_fp32.json"
  REFINENET_ROS_MODELS=$candidate "${int8_export[@]}" --output "$candidate/camvid_mbv2_int8.onnx" \
    > "$out/select_export_int8.json"
  REFINENET_ROS_MODELS=$candidate "${eval_val[@]}" --precision int8 --json "$out/select_val_int8.json"
}
if [[ $out/select_val_int8.json -nt $select/final.pth ]]; then
  echo "ship_camvid.sh: reusing the verdict in $out (newer than $select/final.pth)"
else
  measure_verdict
fi
python - "$out/select_val_fp32.json" "$bar" <<'EOF'
import json, sys
miou, bar = json.load(open(sys.argv[1]))["miou"], float(sys.argv[2])
print(f"recipe-selection run: val mIoU {100 * miou:.2f}% against the bar {100 * bar:.2f}%")
sys.exit(0 if miou >= bar else "ship_camvid.sh: below the bar, nothing shipped")
EOF
[ -n "$final" ] || { echo "verdict only: figures in $out"; exit 0; }

python -m refinenet_ros.training.ship --checkpoint "$final/final.pth" --arch mbv2 \
  --output models/camvid_mbv2.pth --metadata models/camvid_mbv2.json \
  --evaluation "$out/select_val_fp32.json" \
  --evaluation-split "CamVid val (101 images, 480x360), fp32, single scale, of the recipe-selection run (same recipe, trained on train only); the shipped weights were trained on train+val, so val is not held out for them" \
  --training "scripts/train_camvid.sh final: CamVid train+val (468 images), 50 epochs of 360x480 crops, OHEM, EMA weights, ImageNet MobileNet-v2 encoder; see README 'Model card'"
# the new weights in models/, not the installed copy that "default" means after setup.sh
REFINENET_ROS_MODELS=$PWD/models "${int8_export[@]}" --output models/camvid_mbv2_int8.onnx > "$out/export_int8.json"
scripts/setup.sh  # install the shipped files
echo "shipped: models/camvid_mbv2.pth, models/camvid_mbv2_int8.onnx, models/camvid_mbv2.json; figures in $out"
