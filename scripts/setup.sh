#!/usr/bin/env bash
# Creates .venv (Python 3.11) with the pinned dependencies and installs this package into it
# (a real install, so launch/config/model files land in $VIRTUAL_ENV/share/refinenet_ros and
# the executables in $VIRTUAL_ENV/lib/refinenet_ros, where `ros2 run`/`ros2 launch` look).
# The ROS 2 pieces PyPI lacks (launch, launch_ros, the ros2 CLI, vision_msgs) are installed
# from ../shared/ros2 (or $REFINENET_SHARED/ros2) when that folder exists.
# Idempotent: dependencies are reinstalled only when requirements.txt or those wheels change.
set -euo pipefail
cd "$(dirname "$0")/.."
# One setup at a time per checkout: two runs started side by side (scripts/train_camvid.sh select
# and final) would otherwise build the wheel in the same ./build and one of them fails.
exec 9<"$0"
flock 9
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
ros_wheels=(); shopt -s nullglob; ros_wheels=("${REFINENET_SHARED:-../shared}"/ros2/*.whl); shopt -u nullglob
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt "${ros_wheels[@]}" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip 'setuptools<80' wheel
  .venv/bin/python -m pip install -q -r requirements.txt
  if [ ${#ros_wheels[@]} -gt 0 ]; then  # offline wheels, no dependency resolution (their README)
    .venv/bin/python -m pip install -q --no-index --no-deps "${ros_wheels[@]}"
  fi
  echo "$want" > "$stamp"
fi
.venv/bin/python -m pip install -q --no-deps --no-build-isolation --force-reinstall . >/dev/null
rm -rf build ./*.egg-info
# pip puts console scripts in bin/; ROS looks in lib/<package>/ (colcon puts them there itself).
mkdir -p .venv/lib/refinenet_ros
for script in $(.venv/bin/python -c "from importlib.metadata import entry_points
print(' '.join(e.name for e in entry_points(group='console_scripts') if e.value.startswith('refinenet_ros.')))"); do
  ln -sfn "../../bin/$script" ".venv/lib/refinenet_ros/$script"
done
