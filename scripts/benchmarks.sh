#!/usr/bin/env bash
# Every benchmark behind the README's performance figures, one after the other, JSON into
# bench/ (run on an otherwise idle machine; each compares against its baseline in the same run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 50) + 150 ))}"
mkdir -p bench
W=${WEIGHTS:-default}
python -m refinenet_ros.benchmark --weights "$W" --height 360 --width 480 --batch 1 --iterations 20 --warmup 3 > bench/engine_b1.json
python -m refinenet_ros.benchmark --weights "$W" --height 360 --width 480 --batch 4 --iterations 8 --warmup 2 > bench/engine_b4.json
python -m refinenet_ros.benchmark_models --archs mbv2 --iterations 5 --warmup 1 --output bench/models_mbv2.json > /dev/null
# bf16 is emulated (~10x slower) on CPUs without AMX/AVX512-BF16: fp32 modes only for the big models
python -m refinenet_ros.benchmark_models --archs rf_lw50 rf_lw101 rf_lw152 refinenet50 refinenet101 refinenet152 \
    gcn50 gcn101 gcn152 --sizes 360x480 --modes unfused_fp32 fused_fp32 --iterations 2 --warmup 1 \
    --output bench/models_resnet.json > /dev/null
refinenet-export --weights "$W" --output bench/camvid_mbv2.onnx --height 360 --width 480 --benchmark 20 --json > bench/onnx.json
python -m refinenet_ros.benchmark_node --weights "$W" --seconds 10 --device cpu > bench/node.json
ls -l bench
