#!/usr/bin/env bash
# Install, lint, type-check and run the whole test suite (what CI runs), then run the task-family
# tests and the committed results' checks again beside Meta-World, which pins mujoco 3.3: the suite
# must work on 3.3 and 4.x, and the Meta-World results load only there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
export MUJOCO_GL="${MUJOCO_GL:-egl}"
ruff check metarobot envs agents tests scripts
ruff format --check metarobot envs agents tests scripts
mypy
python -m pytest -n 2 -q "$@"
deactivate

python3 -m venv .venv-metaworld
. .venv-metaworld/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}"
python -m pip install --quiet -e ".[metaworld,ray]" pytest pytest-xdist hypothesis
python -c "import metaworld, mujoco; print('mujoco', mujoco.__version__, 'with Meta-World')"
python -m pytest -n 2 -q tests/envs tests/scripts
