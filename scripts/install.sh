#!/usr/bin/env bash
# Install metarobot and its test tools into ./.venv (created if missing). Torch goes first, pinned
# to a build that is already available, so that pip does not pull a multi-GB CUDA build to satisfy
# the plain "torch" requirement; set TORCH_SPEC to choose another (e.g. a CUDA build on a GPU box).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}"
python -m pip install --quiet -e ".[dev]"
