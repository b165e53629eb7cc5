#!/usr/bin/env bash
# Every benchmark behind docs/performance.md, one after the other, JSON into bench/ (run on an
# otherwise idle machine; each compares against its baseline in the same run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 50) + 150 ))}"
mkdir -p bench
W=${WEIGHTS:-default}
# Real CamVid val frames where ../shared is present (label agreement on real scenes), else synthetic.
FRAMES=${FRAMES:-${REFINENET_SHARED:-../shared}/data/camvid/val.txt}
frames=(); [ -f "$FRAMES" ] && frames=(--frames "$FRAMES")
# every installed backend and precision, and auto's measured choice, in one run
python -m refinenet_ros.tools.benchmark --weights "$W" --height 360 --width 480 "${frames[@]}" --batch 1 \
    --iterations 20 --all-backends > bench/engine_all_backends.json
for mode in "torch:fp32" "auto:fp32" "auto:int8"; do  # against the naive baseline
  backend=${mode%:*} precision=${mode#*:}
  python -m refinenet_ros.tools.benchmark --weights "$W" --height 360 --width 480 "${frames[@]}" --backend "$backend" \
      --precision "$precision" --batch 1 --iterations 20 --warmup 3 > "bench/engine_b1_${backend}_${precision}.json"
  python -m refinenet_ros.tools.benchmark --weights "$W" --height 360 --width 480 "${frames[@]}" --backend "$backend" \
      --precision "$precision" --batch 4 --iterations 8 --warmup 2 > "bench/engine_b4_${backend}_${precision}.json"
done
python -m refinenet_ros.tools.benchmark_models --archs mbv2 --iterations 5 --warmup 1 --output bench/models_mbv2.json > /dev/null
# bf16 is emulated (~10x slower) on CPUs without AMX/AVX512-BF16: fp32 modes only for the big models
python -m refinenet_ros.tools.benchmark_models --archs rf_lw50 rf_lw101 rf_lw152 refinenet50 refinenet101 refinenet152 \
    gcn50 gcn101 gcn152 --sizes 360x480 --modes unfused_fp32 fused_fp32 --iterations 2 --warmup 1 \
    --output bench/models_resnet.json > /dev/null
refinenet-export --weights "$W" --output bench/camvid_mbv2.onnx --height 360 --width 480 --benchmark 20 --json > bench/onnx.json
# where the model's time goes, per block and operator: the fp32 export and the shipped int8 model
python -m refinenet_ros.tools.profile_onnx bench/camvid_mbv2.onnx --json > bench/profile_fp32.json
if [ "$W" = default ]; then
  python -m refinenet_ros.tools.profile_onnx models/camvid_mbv2_int8.onnx --json > bench/profile_int8.json
fi
# defaults, max_batch_size 1 and fp32, 1 and 4 cameras, per-stage times
python -m refinenet_ros.tools.benchmark_node --weights "$W" --seconds 10 --device cpu > bench/node.json
python -m refinenet_ros.tools.benchmark_navigation > bench/navigation.json
python -m refinenet_ros.tools.benchmark_navigation --stride 4 > bench/navigation_stride4.json
python -m refinenet_ros.tools.benchmark_soak > bench/soak.json  # 8 cameras at overload, 2 minutes
python -m refinenet_ros.tools.benchmark_memory > bench/memory.json  # one 7680x4320 frame, per backend
ls -l bench
