"""Families by name, Gymnasium registration and a fast constructor for samplers."""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from multiprocessing import forkserver
from typing import Any

import gymnasium

from envs.ant import ANT_DIR, ANT_FWD_BACK, ANT_GOAL, ANT_VEL
from envs.base import MetaEnv, sharing_models
from envs.half_cheetah import HALF_CHEETAH_DIR, HALF_CHEETAH_VEL
from envs.manipulation import PICK_PLACE, PICK_PLACE_PARAMS, PUSH, REACH
from envs.manipulation.metaworld_ml1 import INSTALL_HINT, METAWORLD_FAMILIES, metaworld_installed
from envs.physics import HOPPER_PARAMS, WALKER2D_PARAMS
from envs.point_nav import POINT_NAV_2D
from metarobot.tasks import TaskFamily

NAMESPACE = "metarobot"


@dataclass(frozen=True)
class FamilyEntry:
    """A family and the env class that implements it (as ``module:Class``)."""

    family: TaskFamily
    entry_point: str

    @property
    def env_id(self) -> str:
        """The Gymnasium id, e.g. ``metarobot/AntGoal-v0``."""
        return f"{NAMESPACE}/{self.family.name}-v0"


FAMILIES: dict[str, FamilyEntry] = {
    entry.family.name: entry
    for entry in (
        FamilyEntry(POINT_NAV_2D, "envs.point_nav:PointNav2DEnv"),
        FamilyEntry(HALF_CHEETAH_VEL, "envs.half_cheetah:HalfCheetahVelEnv"),
        FamilyEntry(HALF_CHEETAH_DIR, "envs.half_cheetah:HalfCheetahDirEnv"),
        FamilyEntry(ANT_VEL, "envs.ant:AntVelEnv"),
        FamilyEntry(ANT_FWD_BACK, "envs.ant:AntFwdBackEnv"),
        FamilyEntry(ANT_DIR, "envs.ant:AntDirEnv"),
        FamilyEntry(ANT_GOAL, "envs.ant:AntGoalEnv"),
        FamilyEntry(HOPPER_PARAMS, "envs.physics:HopperParamsEnv"),
        FamilyEntry(WALKER2D_PARAMS, "envs.physics:Walker2dParamsEnv"),
        FamilyEntry(REACH, "envs.manipulation.tabletop:ReachEnv"),
        FamilyEntry(PUSH, "envs.manipulation.tabletop:PushEnv"),
        FamilyEntry(PICK_PLACE, "envs.manipulation.tabletop:PickPlaceEnv"),
        FamilyEntry(PICK_PLACE_PARAMS, "envs.manipulation.tabletop:PickPlaceParamsEnv"),
        # Meta-World's ML1 benchmarks, where the metaworld extra is installed.
        *(
            FamilyEntry(family, f"envs.manipulation.metaworld_envs:{family.name}Env")
            for family in METAWORLD_FAMILIES
            if metaworld_installed()
        ),
    )
}


def _entry(name: str) -> FamilyEntry:
    if name not in FAMILIES and name in {family.name for family in METAWORLD_FAMILIES}:
        raise ValueError(f"task family {name!r} is not available: {INSTALL_HINT}")
    if name not in FAMILIES:
        raise ValueError(f"unknown task family {name!r}; valid families: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def get_family(name: str) -> TaskFamily:
    """The task family called ``name`` (``ValueError`` listing the valid names otherwise)."""
    return _entry(name).family


def env_class(name: str) -> type[MetaEnv]:
    """The env class of family ``name``."""
    module_name, class_name = _entry(name).entry_point.split(":")
    module = __import__(module_name, fromlist=[class_name])
    cls: type[MetaEnv] = getattr(module, class_name)
    return cls


def make(name: str, share_model: bool = False, **kwargs: Any) -> MetaEnv:
    """A bare env of family ``name``: no Gymnasium wrappers, for samplers that step many envs.

    Prefer ``gymnasium.make("metarobot/<name>-v0")`` elsewhere: it adds the time limit and
    Gymnasium's checks. ``kwargs`` go to the env (``task``, ``horizon``, ``render_mode``, ...).
    With ``share_model``, envs of this process share one compiled ``MjModel`` (faster to build
    and to step by the hundred; edit it and every env sees the edit); only for families whose
    ``can_share_model`` is true.
    """
    cls = env_class(name)
    if not share_model:
        return cls(**kwargs)
    if not cls.can_share_model:
        sharable = [n for n in FAMILIES if env_class(n).can_share_model]
        raise ValueError(
            f"{name} envs cannot share a model (its tasks change the model); families that "
            f"can: {', '.join(sharable)}"
        )
    with sharing_models():
        return cls(**kwargs)


def register_all() -> None:
    """Register every family with Gymnasium (idempotent), here and in forkserver workers."""
    _preload_in_forkserver()
    for entry in FAMILIES.values():
        if entry.env_id not in gymnasium.registry:
            gymnasium.register(
                id=entry.env_id,
                entry_point=entry.entry_point,
                max_episode_steps=entry.family.horizon,
            )


def _preload_in_forkserver() -> None:
    """Have multiprocessing's forkserver import ``envs``, so that processes it starts know the ids.

    Stable-Baselines3's ``SubprocVecEnv`` starts its workers from the forkserver, which imports
    only ``__main__`` before forking them: ``make_vec_env("metarobot/<Family>-v0",
    vec_env_cls=SubprocVecEnv)`` would fail in the workers of a notebook, a test or any program
    whose ``__main__`` does not import ``envs``. (``"envs:metarobot/<Family>-v0"`` imports it in
    any process, under any start method.) Has no effect once the forkserver runs.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    preload = list(getattr(forkserver._forkserver, "_preload_modules", ["__main__"]))
    if "envs" not in preload:
        multiprocessing.set_forkserver_preload([*preload, "envs"])
