#!/usr/bin/env bash
# The test suite: sets up .venv, then runs pytest on its own ROS domain with localhost-only
# discovery. Extra arguments go to pytest (e.g. -m "not slow", -k engine).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}"
echo "ROS_DOMAIN_ID=$ROS_DOMAIN_ID ROS_LOG_DIR=$ROS_LOG_DIR"
exec python -m pytest test "$@"
