#!/usr/bin/env bash
# The demo: real footage -> image_source -> segmentation_node (real ROS 2 processes and
# topics) -> side-by-side PNGs and a report in demo_output/. SOURCE=video|folder|bag|/dev/videoN
# overrides the input; other arguments go to `python -m refinenet_ros.tools.demo` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 101 ))}"
exec python -m refinenet_ros.tools.demo ${SOURCE:+--source "$SOURCE"} "$@"
