#!/usr/bin/env bash
# Install, then the main job: meta-train MAML on PointNav2D (a few minutes on 2 CPU cores),
# evaluate adaptation on 40 unseen test goals against the untrained policy, and render a video.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
export MUJOCO_GL="${MUJOCO_GL:-egl}"
RUN="${RUN:-runs/maml-pointnav}"

metarobot list --family PointNav2D
if [ -d "$RUN/checkpoints" ]; then
  metarobot train --out "$RUN" --resume --iterations 25
else
  metarobot train --family PointNav2D --agent maml --iterations 25 --meta-batch-size 20 \
    --episodes-per-task 20 --seed 0 --out "$RUN"
fi
echo "== the same adaptation from the untrained policy (checkpoint 0) =="
metarobot evaluate "$RUN" --split test --tasks 40 --adapt-steps 2 --checkpoint 0
echo "== after meta-training =="
metarobot evaluate "$RUN" --split test --tasks 40 --adapt-steps 2
echo "== a video of one unseen goal, before and after one and two adaptation steps =="
metarobot render "$RUN" --task test:0 --adapt-steps 0,1,2 --frames 4 --width 320 --height 240
