#!/usr/bin/env bash
# The GPU check, one command on a machine with an NVIDIA GPU, without ROS: the non-ROS tests
# (CUDA ones included) under the Python and torch already installed there (a Jetson's own build,
# say), then the engine beside the whole-pipeline CUDA-graph anchor as JSON
# (refinenet_ros/tools/benchmark_gpu.py; its figures, with the GPU named, go in docs/performance.md).
#   scripts/gpu_check.sh                 # FRAMES=... for other real frames than CamVid val
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" REFINENET_ROS_AUTOTUNE=0
"$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device here')"
"$PYTHON" -m pytest -q -m "not ros" test/test_models.py test/test_engine.py test/test_export.py \
    test/test_int8.py test/test_training.py test/test_own_models.py test/test_plan.py test/test_gpu_check.py
frames=${FRAMES:-${REFINENET_SHARED:-../shared}/data/camvid/val.txt}
[ -e "$frames" ] || frames=""
mkdir -p bench
"$PYTHON" -m refinenet_ros.tools.benchmark_gpu ${frames:+--frames "$frames"} | tee bench/gpu_check.json
