"""Pick an OpenGL backend for offscreen MuJoCo rendering, on machines without a display.

MuJoCo (through Gymnasium's renderer and PyOpenGL) reads ``MUJOCO_GL`` when it creates its first
GL context, and PyOpenGL fixes its platform for the whole process on first import. A failed
attempt therefore cannot be retried in-process with another backend, so each candidate is tried
once in a short-lived subprocess (about a second, once per process) before the choice is exported
to this process's environment, where child processes inherit it.

This module imports nothing heavy, so the CLI can call :func:`setup_headless_gl` before MuJoCo's
rendering stack is loaded.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

HEADLESS_BACKENDS: tuple[str, ...] = ("egl", "osmesa")
"""Backends tried, in order, when ``MUJOCO_GL`` is unset: EGL (GPU or Mesa), then OSMesa."""

INSTALL_HINT = (
    "MuJoCo could not create an offscreen OpenGL context with {tried}. Install one of:\n"
    "  - EGL (preferred; GPU drivers ship it, or Mesa in software):\n"
    "      Debian/Ubuntu: sudo apt-get install libegl1 libgl1 libgles2\n"
    "      (NVIDIA: the driver's libEGL_nvidia, e.g. libnvidia-gl-<version>)\n"
    "  - OSMesa (pure software fallback):\n"
    "      Debian/Ubuntu: sudo apt-get install libosmesa6\n"
    "      Fedora: sudo dnf install mesa-libOSMesa\n"
    "and PyOpenGL (`pip install PyOpenGL`). Then retry, or force a backend with "
    "MUJOCO_GL=egl|osmesa (MUJOCO_GL=glfw renders through a window on a desktop)."
)

# Creates, activates and frees a tiny context: exactly what the first rendered frame will do.
_PROBE = (
    "import importlib, sys\n"
    "module = importlib.import_module('mujoco.' + sys.argv[1])\n"
    "context = module.GLContext(8, 8)\n"
    "context.make_current()\n"
    "context.free()\n"
)


class HeadlessGLError(RuntimeError):
    """No offscreen OpenGL backend works; the message says what to install."""


def backend_works(backend: str, timeout: float = 60.0) -> bool:
    """Whether MuJoCo can create a ``backend`` GL context, tried in a separate process."""
    env = {**os.environ, "MUJOCO_GL": backend}
    # The probe must pick its own PyOpenGL platform, as this process will after the choice.
    env.pop("PYOPENGL_PLATFORM", None)
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _PROBE, backend],
            env=env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@functools.cache
def setup_headless_gl() -> str:
    """Choose and export ``MUJOCO_GL``; call before the first frame is rendered.

    A ``MUJOCO_GL`` set by the user is respected: ``egl`` or ``osmesa`` is checked (so a broken
    install fails here, with advice, rather than deep inside PyOpenGL), any other value (``glfw``
    with a display) is trusted. When unset, EGL is tried first, then OSMesa.

    Returns:
        The backend in use.

    Raises:
        HeadlessGLError: No candidate backend works; the message lists what to install.
    """
    chosen = os.environ.get("MUJOCO_GL", "").strip().lower()
    if chosen and chosen not in HEADLESS_BACKENDS:
        return chosen
    candidates = (chosen,) if chosen else HEADLESS_BACKENDS
    for backend in candidates:
        if backend_works(backend):
            os.environ["MUJOCO_GL"] = backend
            return backend
    tried = f"MUJOCO_GL={chosen}" if chosen else " or ".join(HEADLESS_BACKENDS)
    raise HeadlessGLError(INSTALL_HINT.format(tried=tried))
