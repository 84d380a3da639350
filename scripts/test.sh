#!/usr/bin/env bash
# Install, lint, type-check and run the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
export MUJOCO_GL="${MUJOCO_GL:-egl}"
ruff check metarobot envs agents tests scripts
ruff format --check metarobot envs agents tests scripts
mypy
python -m pytest -n 2 -q "$@"
