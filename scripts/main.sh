#!/usr/bin/env bash
# Install, then run the main job: list the task families and roll out a random policy on each.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
export MUJOCO_GL="${MUJOCO_GL:-egl}"
metarobot list
