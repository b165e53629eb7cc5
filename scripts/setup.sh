#!/usr/bin/env bash
# Creates .venv (Python 3.11) with the pinned dependencies and installs this package into it
# (a real install, so launch/config/model files land in $VIRTUAL_ENV/share/refinenet_ros).
# Idempotent: dependencies are reinstalled only when requirements.txt changes.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip 'setuptools<80' wheel
  .venv/bin/python -m pip install -q -r requirements.txt
  echo "$want" > "$stamp"
fi
.venv/bin/python -m pip install -q --no-deps --no-build-isolation --force-reinstall . >/dev/null
rm -rf build ./*.egg-info
