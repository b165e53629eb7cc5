# Sourced by the other scripts: the ROS 2 environment of the wheels in .venv.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$root/.venv/bin/activate"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
if [ -z "${FASTRTPS_DEFAULT_PROFILES_FILE:-}${FASTDDS_DEFAULT_PROFILES_FILE:-}" ]; then
  export FASTRTPS_DEFAULT_PROFILES_FILE="$root/config/fastdds.xml" RMW_FASTRTPS_USE_QOS_FROM_XML=1
fi
export ROS_LOG_DIR="${ROS_LOG_DIR:-$(mktemp -d /tmp/refinenet_ros_log.XXXXXX)}"
export PYTHONUNBUFFERED=1
