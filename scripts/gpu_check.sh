#!/usr/bin/env bash
# The GPU check, one command on a machine with an NVIDIA GPU, without ROS or a registry: the
# non-ROS tests (CUDA ones included) under the Python and torch already installed there, then the
# engine with CUDA graphs on and off beside the whole-pipeline CUDA-graph anchor, the graphs'
# self-checks and the test summary, as one JSON (refinenet_ros/tools/benchmark_gpu.py; its
# figures, with the GPU named, go in docs/performance.md).
#   scripts/gpu_check.sh                 # FRAMES=... for other real frames than CamVid val
#   scripts/gpu_check.sh --device cpu    # a dry run on a CPU (the CUDA parts say why they skip)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
device=cuda
if [ "${1:-}" = "--device" ]; then device=${2:?--device needs a value}; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" REFINENET_ROS_AUTOTUNE=0
if [ "$device" = cuda ]; then
  "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device here')"
  tests=(test/test_models.py test/test_engine.py test/test_frame_function.py test/test_paths.py test/test_export.py
         test/test_int8.py test/test_training.py test/test_own_models.py test/test_plan.py test/test_gpu_check.py)
  batches=(1 8 16); seconds=2.0; size=(360 480)
else  # the dry run: the CPU halves, small and short
  tests=(test/test_frame_function.py)
  batches=(1 2); seconds=0.3; size=(96 128)
fi
mkdir -p bench
"$PYTHON" -m pytest -q -p no:cacheprovider -m "not ros" "${tests[@]}" 2>&1 | tee bench/gpu_check_tests.txt || true
frames=${FRAMES:-${REFINENET_SHARED:-../shared}/data/camvid/val.txt}
[ -e "$frames" ] || frames=""
"$PYTHON" -m refinenet_ros.tools.benchmark_gpu --device "$device" --batches "${batches[@]}" --seconds "$seconds" \
    --size "${size[@]}" --tests bench/gpu_check_tests.txt ${frames:+--frames "$frames"} | tee bench/gpu_check.json
