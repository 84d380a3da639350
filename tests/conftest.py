"""Shared fixtures: headless rendering and quiet MuJoCo model compilation."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
