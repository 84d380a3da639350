"""PPO baselines from Stable-Baselines3 behind the agent protocol: from scratch and multi-task.

Reads top to bottom: the configs, the seeding helpers, the shared adaptation (one SB3 PPO
update per adaptation step, per task, continuing the task's PPO run from the adaptation state),
then the two agents, which differ only in what the meta-parameters are: a fresh random policy
(``ppo-scratch``) or one policy pretrained with PPO on a stream of train tasks
(``ppo-multitask``).

What a baseline gets, in the terms of :mod:`metarobot.evaluation`: adaptation step ``k`` learns
from exactly the rollouts the protocol sampled with the current parameters (``R`` episodes of
the task), as every meta-learner does, so all agents spend the same environment steps per step.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import math
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.common import check_task_axis
from agents.sb3.multitask_env import make_multitask_env
from agents.sb3.transfer import actor_params, load_actor, rollout_buffer, sb3_policy_kwargs
from metarobot.agent import Adaptation, Agent, MetaBatch, check_config
from metarobot.episodes import Episodes
from metarobot.policies import GaussianMLPPolicy, Params, expand_params
from metarobot.sampling import EnvFn
from metarobot.seeding import derive_seed
from metarobot.tasks import TaskFamily


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters; the defaults are SB3's, i.e. the PPO paper's MuJoCo settings."""

    learning_rate: float = 3e-4
    """Adam step size."""
    n_epochs: int = 10
    """Passes over each batch of rollouts (one batch per adaptation step)."""
    batch_size: int = 64
    """Minibatch size of those passes."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda of the advantages and of the critic's TD(lambda) targets."""
    clip_range: float = 0.2
    """Clipping range of the probability ratio."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus."""
    vf_coef: float = 0.5
    """Weight of the critic's loss."""
    max_grad_norm: float = 0.5
    """Gradient norm clipping."""

    def __post_init__(self) -> None:
        check_config(self, self.rules())

    def rules(self) -> dict[str, tuple[bool, str]]:
        """Validity of each field, for :func:`metarobot.agent.check_config` (subclasses add)."""
        return {
            "learning_rate": (self.learning_rate > 0, "> 0"),
            "n_epochs": (self.n_epochs >= 1, ">= 1"),
            "batch_size": (self.batch_size >= 2, ">= 2 (advantages are normalized per batch)"),
            "gamma": (0 <= self.gamma <= 1, "in [0, 1]"),
            "gae_lambda": (0 <= self.gae_lambda <= 1, "in [0, 1]"),
            "clip_range": (self.clip_range > 0, "> 0"),
            "ent_coef": (self.ent_coef >= 0, ">= 0"),
            "vf_coef": (self.vf_coef >= 0, ">= 0"),
            "max_grad_norm": (self.max_grad_norm > 0, "> 0"),
        }


@dataclass(frozen=True)
class PPOMultiTaskConfig(PPOConfig):
    """Multi-task PPO: :class:`PPOConfig` plus how pretraining collects and how much."""

    n_steps: int = 2048
    """Steps per environment per pretraining rollout (SB3's default)."""
    n_envs: int = 1
    """Environments stepped together while pretraining (in this process, a ``DummyVecEnv``)."""
    matched_inner_steps: int = 1
    """Inner steps of the meta-learner whose budget is matched: each iteration pretrains for
    ``(matched_inner_steps + 1) x tasks x episodes x horizon`` env steps, what such a
    meta-learner samples per iteration of the same run config (MAML: 1, Reptile: its k)."""
    pretrain_steps: int = 0
    """Env steps of pretraining per iteration instead; 0 derives them as above."""

    def rules(self) -> dict[str, tuple[bool, str]]:
        """:meth:`PPOConfig.rules` and those of the pretraining fields."""
        return {
            **super().rules(),
            "n_steps": (self.n_steps >= 1, ">= 1"),
            "n_envs": (self.n_envs >= 1, ">= 1"),
            "matched_inner_steps": (self.matched_inner_steps >= 0, ">= 0"),
            "pretrain_steps": (self.pretrain_steps >= 0, ">= 0 (0: match the meta-learner)"),
        }


ConfigT = TypeVar("ConfigT", bound=PPOConfig)


@contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Seed the global generators SB3 draws from, and give them back unchanged afterwards.

    SB3 samples actions from torch's global generator and shuffles minibatches with numpy's;
    seeding both makes an update a function of its inputs and seed, and restoring them keeps
    every other user of those generators unaffected.
    """
    # SB3 draws from numpy's legacy global generator, so that is the one to save and restore.
    numpy_state, python_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    with torch.random.fork_rng():
        set_random_seed(seed)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)  # noqa: NPY002
            random.setstate(python_state)


def episodes_seed(episodes: Episodes) -> int:
    """The seed of one task's update, drawn from its episodes' actions and rewards.

    Adaptation thereby stays a function of its inputs alone: a task adapts the same on every
    backend, whichever batch it is in and wherever (evaluation's batches, Ray's slices), which a
    seed from the run and the task's position would not give.
    """
    digest = hashlib.blake2b(digest_size=16)
    for name, values in (("actions", episodes.actions), ("rewards", episodes.rewards)):
        digest.update(name.encode())
        digest.update(values.detach().cpu().contiguous().numpy().tobytes())
    return int.from_bytes(digest.digest()[:4], "little")


class LearnerState(NamedTuple):
    """What a PPO run carries from one update to the next: actor-critic and Adam state."""

    policy: dict[str, torch.Tensor]
    optimizer: dict[str, Any]


TaskRuns = tuple[LearnerState, ...]
"""Each task's PPO run after its latest update: the baselines' adaptation state."""


class PPOBaseline(Agent[ConfigT]):
    """An SB3 PPO learner whose actor is our policy; adaptation is PPO on each task's rollouts.

    Schulman, Wolski, Dhariwal, Radford and Klimov, "Proximal Policy Optimization Algorithms",
    arXiv 2017 (https://arxiv.org/abs/1707.06347), as implemented by Stable-Baselines3: Raffin,
    Hill, Gleave, Kanervisto, Ernestus and Dormann, "Stable-Baselines3: Reliable Reinforcement
    Learning Implementations", JMLR 22(268), 2021.

    The learner is SB3's ``PPO`` with ``MlpPolicy`` (``net_arch=dict(pi=hidden, vf=hidden)``,
    tanh), whose actor has our policy's shape (:mod:`agents.sb3.transfer`). At rest it holds the
    *template*: the meta-parameters as actor, the critic and Adam state that go with them.

    Adaptation step of task ``i``: load the task's PPO run (the template on the first step),
    put ``params[i]`` in the actor, lay the step's rollouts into SB3's ``RolloutBuffer`` and run
    ``PPO.train`` once (``n_epochs`` passes of minibatches of the clipped surrogate, value loss
    and entropy bonus). That is one iteration of SB3's own ``learn`` loop with ``n_steps`` equal
    to the rollouts' steps, except that the protocol's sampler collected them with the same
    policy. Each task keeps its critic and optimizer state across its adaptation steps: the
    runs after a step are the :class:`~metarobot.agent.Adaptation` state (:data:`TaskRuns`)
    that the next step continues from, while the learner itself goes back to the template.

    The baselines do not meta-train through adaptation: :attr:`num_inner_steps` is 0, so the
    training loop samples only the validation rollouts of the meta-parameters (its
    ``adapt/step_0`` metrics) and hands them to :meth:`meta_update`.
    """

    def __init__(
        self,
        policy: GaussianMLPPolicy,
        config: ConfigT | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(policy, config, device)
        self._environments: tuple[EnvFn, TaskFamily, int] | None = None
        self._learner: PPO | None = None
        self._loaded: LearnerState | None = None
        """A loaded template waiting for the learner (see :meth:`load_state_dict`)."""

    @property
    def num_inner_steps(self) -> int:
        """0: the training loop never adapts a baseline (see the class docstring)."""
        return 0

    def use_environments(self, env_fn: EnvFn, family: TaskFamily, seed: int) -> None:
        """Build the SB3 learner on ``family``'s train tasks; see ``Agent.use_environments``.

        Args:
            env_fn: Factory of one bare env of the family that draws a train task at every
                reset (``resample_tasks=True``; ``horizon`` is its time limit).
            family: The family whose train tasks pretraining learns on.
            seed: Seeds the critic's initialization and every pretraining update.
        """
        self._environments = (env_fn, family, seed)
        self._build_learner()

    @property
    def learner(self) -> PPO:
        """The SB3 PPO learner, holding the template at rest."""
        if self._learner is None:
            raise RuntimeError(
                f"{type(self).__name__} has no environments: call use_environments(env_fn, "
                f"family, seed) first (metarobot.run.build does)"
            )
        return self._learner

    @torch.enable_grad()
    def adapt(
        self, episodes: Episodes, previous: Adaptation[TaskRuns | None] | None = None
    ) -> Adaptation[TaskRuns]:
        """One PPO update per task on its rollouts; see :meth:`metarobot.agent.Agent.adapt`.

        Each task's run continues from ``previous.state``, or starts from the template.
        """
        learner = self.learner
        num_tasks = episodes.num_tasks
        template = self._snapshot()
        if previous is None:
            params = expand_params(self.policy.meta_parameters(), num_tasks)
            runs: TaskRuns | None = None
        else:
            params, runs = previous.params, previous.state
        check_task_axis(params, num_tasks)
        adapted: list[Params] = []
        continued: list[LearnerState] = []
        try:
            for task in range(num_tasks):
                self._restore(template if runs is None else runs[task])
                load_actor(
                    learner.policy, self.policy, {name: p[task] for name, p in params.items()}
                )
                task_episodes = episodes.task(task)
                learner.rollout_buffer = rollout_buffer(
                    learner.policy, task_episodes, self.config.gamma, self.config.gae_lambda
                )
                with isolated_rng(episodes_seed(task_episodes)):
                    learner.train()
                adapted.append(actor_params(learner.policy, self.policy))
                continued.append(self._snapshot())
        finally:
            self._restore(template)
        stacked = {name: torch.stack([p[name] for p in adapted]).to(self.device) for name in params}
        return Adaptation(stacked, tuple(continued))

    def state_dict(self) -> dict[str, Any]:
        """Policy and config, and the template's SB3 actor-critic and optimizer state."""
        template = self._loaded if self._loaded is not None else self._snapshot()
        return {
            **super().state_dict(),
            "sb3_policy": template.policy,
            "sb3_optimizer": template.optimizer,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved.

        Before :meth:`use_environments` (an agent rebuilt from its state alone, as the Ray
        backend's actors do) the SB3 state waits for the learner, which is built from the
        environments; the policy and config are restored at once.
        """
        config = self.config
        super().load_state_dict(state)
        self._loaded = LearnerState(state["sb3_policy"], state["sb3_optimizer"])
        if self._learner is not None and self.config == config:
            self._apply_loaded()
            self._sync_actor()
        elif self._environments is not None:  # the learner's hyperparameters come from config
            self._build_learner()

    def _pretraining_setup(self) -> tuple[int, dict[str, Any]]:
        """Environments and extra ``PPO`` arguments for the learner's own rollouts.

        One environment and SB3's defaults here: only pretraining collects rollouts of its own.
        """
        return 1, {}

    def _build_learner(self) -> None:
        """(Re)build the learner from config and environments: the loaded template, else fresh."""
        if self._environments is None:
            raise RuntimeError("use_environments() must come before the learner is built")
        env_fn, family, seed = self._environments
        num_envs, extra = self._pretraining_setup()
        make_env = functools.partial(make_multitask_env, env_fn, family)
        config = self.config
        with isolated_rng(seed):  # the critic's initialization
            learner = PPO(
                "MlpPolicy",
                DummyVecEnv([make_env] * num_envs),
                learning_rate=config.learning_rate,
                n_epochs=config.n_epochs,
                batch_size=config.batch_size,
                gamma=config.gamma,
                gae_lambda=config.gae_lambda,
                clip_range=config.clip_range,
                ent_coef=config.ent_coef,
                vf_coef=config.vf_coef,
                max_grad_norm=config.max_grad_norm,
                policy_kwargs=sb3_policy_kwargs(self.policy),
                device=self.device,
                **extra,
            )
        learner.set_logger(Logger(folder=None, output_formats=[]))
        self._learner = learner
        if self._loaded is not None:
            self._apply_loaded()
        self._sync_actor()

    def _apply_loaded(self) -> None:
        """Make the loaded template the learner's (the caller then syncs the actor)."""
        assert self._loaded is not None
        self._restore(self._loaded)
        self._loaded = None

    def _sync_actor(self) -> None:
        """Put the meta-parameters into the learner's actor (the template's actor)."""
        load_actor(self.learner.policy, self.policy, self.policy.meta_parameters())

    def _snapshot(self) -> LearnerState:
        policy = self.learner.policy
        return LearnerState(
            copy.deepcopy(policy.state_dict()), copy.deepcopy(policy.optimizer.state_dict())
        )

    def _restore(self, state: LearnerState) -> None:
        policy = self.learner.policy
        policy.load_state_dict(state.policy)
        # Adam updates its moments in place: the stored state must not become the live one.
        policy.optimizer.load_state_dict(copy.deepcopy(state.optimizer))


class PPOScratch(PPOBaseline[PPOConfig]):
    """PPO from scratch on each test task: the "random initialization" baseline.

    PPO (Schulman et al., 2017, https://arxiv.org/abs/1707.06347) in Stable-Baselines3 (Raffin
    et al., JMLR 2021); the comparison is the MAML paper's (Finn et al., ICML 2017, Sec. 5.3).

    The meta-parameters are the run's seeded initial policy (the same weights as every
    meta-learner's checkpoint 0 for the same seed and sizes) with a fresh critic; nothing is
    meta-trained (:meth:`meta_update` changes nothing), so train it with ``--iterations 0``.
    After ``k`` adaptation steps the policy has had ``k`` PPO updates on ``k x R`` rollouts of
    the test task, the same experience a meta-learner has had.
    """

    config_class = PPOConfig

    def meta_update(self, batch: MetaBatch) -> dict[str, float]:
        """Nothing to learn: a from-scratch baseline has no meta-parameters to train."""
        return {}


class PPOMultiTask(PPOBaseline[PPOMultiTaskConfig]):
    """Multi-task PPO pretrained on the train tasks, then fine-tuned on each test task.

    PPO (Schulman et al., 2017, https://arxiv.org/abs/1707.06347) in Stable-Baselines3 (Raffin
    et al., JMLR 2021); the MAML paper's "pretrained" baseline (Finn et al., ICML 2017, Sec. 5.3).

    Pretraining: every :meth:`meta_update` continues SB3's ``PPO.learn`` on ``n_envs`` envs
    that draw a new train task at every reset (the families' ``resample_tasks=True``), one
    policy for all tasks, with no task information in the observation. Its budget tracks a
    meta-learner's: ``pretrain_steps`` per iteration, or ``(matched_inner_steps + 1) x N x E x
    T`` for a meta-batch of ``N`` tasks, ``E`` episodes and horizon ``T``; ``learn`` runs whole
    rollouts of ``n_steps x n_envs`` steps, as many as bring the steps taken so far up to the
    budget so far, so the total overshoots by less than one rollout. The training loop's own
    rollouts (the ``adapt/step_0`` metrics) only measure the policy and are not learned from.

    Fine-tuning: as in :class:`PPOBaseline`, each task's PPO run starts from the pretrained
    actor, critic and Adam state.

    Each update is seeded from the run seed and the update count, and resets its envs, so a
    resumed run repeats an uninterrupted one (a rollout in flight at an update's end is cut).
    """

    config_class = PPOMultiTaskConfig

    def __init__(
        self,
        policy: GaussianMLPPolicy,
        config: PPOMultiTaskConfig | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(policy, config, device)
        self.updates = 0
        """Meta-updates done; with the run seed it seeds the next one."""
        self.budget = 0
        """Pretraining env steps owed so far (the matched meta-learner's)."""
        self.env_steps = 0
        """Pretraining env steps taken so far."""

    def meta_update(self, batch: MetaBatch) -> dict[str, float]:
        """Pretrain until the steps taken reach the budget; see the class docstring.

        Returns:
            ``pretrain/env_steps`` and ``pretrain/budget`` (cumulative), and
            ``pretrain/episode_return`` (mean return of this update's last 100 episodes; absent
            when it finished none, since the training loop drops updates with NaN metrics).
        """
        learner = self.learner
        valid = batch.valid
        matched = (self.config.matched_inner_steps + 1) * valid.num_tasks
        per_iteration = self.config.pretrain_steps or (
            matched * valid.episodes_per_task * valid.horizon
        )
        self.budget += per_iteration
        rollout = learner.n_steps * learner.n_envs
        steps = math.ceil(max(self.budget - self.env_steps, 0) / rollout) * rollout
        metrics: dict[str, float] = {}
        if steps:
            assert self._environments is not None and learner.env is not None
            seed = derive_seed(self._environments[2], self.updates)
            self._sync_actor()
            with isolated_rng(seed):
                learner.env.seed(seed)
                learner.learn(steps, reset_num_timesteps=True)
            self.env_steps += learner.num_timesteps
            assert learner.ep_info_buffer is not None
            if learner.ep_info_buffer:
                returns = [info["r"] for info in learner.ep_info_buffer]
                metrics["pretrain/episode_return"] = float(np.mean(returns))
            with torch.no_grad():
                meta = self.policy.meta_parameters()
                for name, value in actor_params(learner.policy, self.policy).items():
                    meta[name].copy_(value)
        self.updates += 1
        return {
            "pretrain/env_steps": float(self.env_steps),
            "pretrain/budget": float(self.budget),
            **metrics,
        }

    def _pretraining_setup(self) -> tuple[int, dict[str, Any]]:
        """``n_envs`` environments and rollouts of ``n_steps`` steps per environment."""
        return self.config.n_envs, {"n_steps": self.config.n_steps}

    def state_dict(self) -> dict[str, Any]:
        """:meth:`PPOBaseline.state_dict` and the update and budget counters."""
        counters = {"updates": self.updates, "budget": self.budget, "env_steps": self.env_steps}
        return {**super().state_dict(), **counters}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        super().load_state_dict(state)
        self.updates = int(state["updates"])
        self.budget = int(state["budget"])
        self.env_steps = int(state["env_steps"])
