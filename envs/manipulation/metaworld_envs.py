"""Env classes of the Meta-World families; importing this module imports Meta-World.

Each env runs Meta-World's own environment of its task's skill and shares its compiled model and
data, so Meta-World's model, observation (39 values, frame-stacked, the goal zeroed unless
``observe_goal=True``), dynamics and reward are untouched, while :class:`~envs.base.MetaEnv`
supplies the contract of the other families (typed tasks, input checks, unstable-physics flag).
It holds rather than inherits Meta-World's class: Meta-World's public ``compute_reward`` would
make Stable-Baselines3 take the env for a goal-conditioned one. What the adapter adds:

- tasks are typed records, applied through Meta-World's own ``set_task``;
- ``reset(seed=...)`` seeds the env (Meta-World ignores the seed) and jitters the hand's start
  by up to ``hand_noise`` metres (``hand_noise=0`` gives Meta-World's deterministic resets);
- ``info["reward_metaworld"]`` is Meta-World's reward, the one term that the reward sums, and
  ``info["success"]`` is a bool; Meta-World's diagnostics are kept as they are;
- the horizon is Meta-World's 500 steps unless given, and Meta-World's own step limit follows it.

An env of ML10 or ML45 switches skill with its task. A Meta-World env is heavy (a 20 MB compiled
model, 0.1 s to build) and a sampler steps hundreds of family envs per process, so Meta-World envs
are built once per process and lent: a family env holds one of its task's skill, taken from a
pool of idle ones when its task changes skill (built only when none is idle) and given back when
it changes again or closes (closed with it if it renders). A process thus keeps, per skill, as
many as run that skill at once (a meta-batch of 20 ML10 tasks x 10 episodes: about 200 in all, as
many as for ML1), not one per family env and skill. A reset rebuilds the whole state from the
task, so what a lent env ran before never shows (tests check it against fresh Meta-World envs).
"""

from __future__ import annotations

import pickle
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from gymnasium.spaces import Box
from metaworld.env_dict import ALL_V3_ENVIRONMENTS
from metaworld.sawyer_xyz_env import SawyerXYZEnv
from metaworld.types import Task as MetaWorldTask

from envs.base import MetaEnv, StepResult
from envs.manipulation.metaworld_ml1 import METAWORLD_FAMILIES
from envs.manipulation.metaworld_tasks import REWARD_VERSION, SKILLS, MetaWorldFamily
from envs.scene import SceneSpec, View
from metarobot.tasks import Split, Task

_Settings = tuple[bool, tuple[tuple[str, Any], ...]]
"""How a Meta-World env was built: goal observed, and the keywords it was given."""


@dataclass
class _Sawyer:
    """A Meta-World env of one skill, with what its resets need that Meta-World overwrites."""

    skill: int
    settings: _Settings
    env: SawyerXYZEnv
    hand_start: np.ndarray


class _Pool:
    """The idle Meta-World envs of this process, by skill and settings."""

    def __init__(self) -> None:
        self._idle: defaultdict[tuple[int, _Settings], list[_Sawyer]] = defaultdict(list)

    def take(self, skill: int, settings: _Settings) -> _Sawyer:
        """An idle env of ``skill`` built with ``settings``, or a new one."""
        idle = self._idle[skill, settings]
        return idle.pop() if idle else _build(skill, settings)

    def give(self, sawyer: _Sawyer) -> None:
        """Take back an env that its holder no longer runs."""
        self._idle[sawyer.skill, sawyer.settings].append(sawyer)


_POOL = _Pool()


def _build(skill: int, settings: _Settings) -> _Sawyer:
    observe_goal, kwargs = settings
    spec = SKILLS[skill]
    env = ALL_V3_ENVIRONMENTS[spec.env_name](reward_function_version=REWARD_VERSION, **dict(kwargs))
    space = env._random_reset_space
    low, high = [s.low for s in spec.specs], [s.high for s in spec.specs]
    if space is None or not (np.array_equal(space.low, low) and np.array_equal(space.high, high)):
        raise RuntimeError(
            f"Meta-World's {spec.env_name} now draws tasks from {space}, not from "
            f"[{low}, {high}] as envs.manipulation.metaworld_tasks.SKILLS declares"
        )
    # Meta-World derives its observation space from its observability flag.
    env._partially_observable = not observe_goal
    env.__dict__.pop("sawyer_observation_space", None)
    env.observation_space = env.sawyer_observation_space
    return _Sawyer(skill, settings, env, np.array(env.hand_init_pos, dtype=np.float64))


class MetaWorldEnv(MetaEnv):
    """A Meta-World family's env: Meta-World's env of the current task's skill.

    Args:
        task: Initial task (optional: ``reset`` draws one when none is given).
        horizon: Episode length (default 500, Meta-World's).
        task_split: Split that tasks are drawn from (see :class:`~envs.base.MetaEnv`).
        resample_tasks: Draw a new task at every reset that is given none.
        observe_goal: Show the goal in the last 3 observation entries (Meta-World's MT setting;
            unbounded in the observation space of a family of several skills, whose goal
            ranges differ).
        hand_noise: Half-width (m) of the uniform noise on the hand's start position.
        **kwargs: Passed to Meta-World's env (``render_mode``, ``width``, ``height``,
            ``camera_name``, ``camera_id``).
    """

    family: ClassVar[MetaWorldFamily]
    scene = SceneSpec(View(lookat=(0.0, 0.6, 0.15), distance=1.5, elevation=-35.0, azimuth=-60.0))
    """Films the table from the front, beside the arm: Meta-World's cameras show the object small
    (``topview``) or upside down (``corner*``), and a view following the arm's base from behind
    hides the object behind the arm. The goal is Meta-World's own site."""
    info_keys = (
        # Meta-World's diagnostics, the same for every skill (its evaluate_state), ...
        "success",
        "near_object",
        "grasp_success",
        "grasp_reward",
        "in_place_reward",
        "obj_to_target",
        "unscaled_reward",
        # ... and its reward, the one term of ours.
        "reward_metaworld",
    )
    _sawyer: _Sawyer | None = None

    def __init__(
        self,
        task: Task | None = None,
        horizon: int | None = None,
        task_split: Split = "train",
        resample_tasks: bool = False,
        observe_goal: bool = False,
        hand_noise: float = 0.005,
        **kwargs: Any,
    ):
        if hand_noise < 0:
            raise ValueError(f"hand_noise must be >= 0 (m), got {hand_noise}")
        self._hand_noise = hand_noise
        self._settings: _Settings = (observe_goal, tuple(sorted(kwargs.items())))
        # Spaces and settings are those of every skill's env: read them from one lent for now.
        self._hold(_POOL.take(self.family.skills("train")[0], self._settings))
        inner = self._inner
        self.frame_skip, self.metadata = inner.frame_skip, inner.metadata
        self.render_mode, self.action_space = inner.render_mode, inner.action_space
        space = inner.observation_space
        if observe_goal and len(set(self.family.skills("train") + self.family.skills("test"))) > 1:
            unbounded = np.full(3, np.inf)
            low, high = np.r_[space.low[:-3], -unbounded], np.r_[space.high[:-3], unbounded]
            space = Box(low, high, dtype=space.dtype)
        self.observation_space = space
        self._init_meta(task, horizon, task_split, resample_tasks)
        if self._task is None:
            self._release()

    @property
    def _inner(self) -> SawyerXYZEnv:
        """The Meta-World env of the current task."""
        if self._sawyer is None:
            self._require_task()
        assert self._sawyer is not None
        return self._sawyer.env

    def _hold(self, sawyer: _Sawyer) -> None:
        """Run ``sawyer``: the MujocoEnv state that MetaEnv and rendering use is Meta-World's."""
        self._sawyer = sawyer
        self.model, self.data = sawyer.env.model, sawyer.env.data
        self.mujoco_renderer = sawyer.env.mujoco_renderer
        self._divergence_counts = self.data.warning.number  # MetaEnv's view, as in _init_meta

    def _release(self) -> None:
        if self._sawyer is not None:
            _POOL.give(self._sawyer)
            self._sawyer = None

    def _apply_task(self, task: Task) -> None:
        skill = self.family.skill_of(dict(task.params))
        if self._sawyer is None or self._sawyer.skill != skill:
            self._release()
            self._hold(_POOL.take(skill, self._settings))
        inner = self._inner
        data = {
            "rand_vec": self.family.vector_of(task),
            "env_cls": type(inner),
            "partially_observable": inner._partially_observable,
        }
        inner.set_task(MetaWorldTask(SKILLS[skill].env_name, pickle.dumps(data)))

    def reset_model(self) -> np.ndarray:
        """Meta-World's reset, from a hand start jittered with the env's seeded generator."""
        assert self._sawyer is not None
        noise = self.np_random.uniform(-self._hand_noise, self._hand_noise, size=3)
        inner = self._sawyer.env
        inner.hand_init_pos = self._sawyer.hand_start + noise
        inner.max_path_length = self.horizon
        obs, _ = inner.reset()
        return obs

    def _robot_step(self, action: np.ndarray) -> StepResult:
        obs, reward, terminated, truncated, info = self._inner.step(action)
        info = {**info, "success": bool(info["success"]), "reward_metaworld": float(reward)}
        return obs, float(reward), terminated, truncated, info

    def render(self) -> Any:
        """Meta-World's rendering of the current task (``render_mode`` given at construction)."""
        self._require_task()
        return super().render()

    def close(self) -> None:
        """Give the Meta-World env back to this process's pool, or close it if it renders.

        An env that renders holds OpenGL contexts, which Meta-World's env frees only by
        closing for good; one that does not stays built in the pool, for reuse.
        """
        if self._sawyer is not None and self.render_mode is not None:
            self._sawyer.env.close()
            self._sawyer = None
        self._release()


def _env_class(family: MetaWorldFamily) -> type[MetaWorldEnv]:
    name = f"{family.name}Env"
    attributes = {"family": family, "__doc__": f"{family.doc}.", "__module__": __name__}
    return type(name, (MetaWorldEnv,), {**attributes, "__qualname__": name})


ENV_CLASSES: dict[str, type[MetaWorldEnv]] = {
    family.name: _env_class(family) for family in METAWORLD_FAMILIES
}
"""Each Meta-World family's env class, by family name."""

# The registry names them as ``envs.manipulation.metaworld_envs:<Family>Env``, and pickle finds
# them here by the same names.
globals().update({cls.__name__: cls for cls in ENV_CLASSES.values()})
