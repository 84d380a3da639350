"""The agent protocol every meta-learner implements, and the batch its outer loop learns from.

It lives in the core so that the sampler and evaluation need no agent package. The training
loop, evaluation and the CLI only ever talk to this interface:

1. sample train episodes with the meta-parameters, ``adaptation = agent.adapt(episodes)``;
2. sample with ``adaptation.params`` and adapt again, passing the last step's result back,
   ``adaptation = agent.adapt(episodes, adaptation)``, for ``agent.num_inner_steps`` steps in all;
3. sample validation episodes with the final ``adaptation.params``;
4. ``metrics = agent.meta_update(MetaBatch(train=[...], valid=...))``.

An :class:`Adaptation` carries the per-task parameters that samplers consume and, beside them,
whatever per-task state the agent's inner loop keeps from one step to the next (a critic,
optimizer moments), opaque to every caller. The run layer hands every agent its environments
once (:meth:`Agent.use_environments`), for the few that step environments of their own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NamedTuple, Protocol, TypeVar

import torch

from metarobot.episodes import Episodes
from metarobot.policies import GaussianMLPPolicy, Params
from metarobot.tasks import TaskFamily

if TYPE_CHECKING:  # the sampler imports this module for Adaptation: no import cycle at run time
    from metarobot.sampling import EnvFn


class DataclassInstance(Protocol):
    """Any dataclass instance (what ``dataclasses.fields`` and ``asdict`` accept)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]


ConfigT = TypeVar("ConfigT", bound=DataclassInstance)
StateT = TypeVar("StateT")


@dataclass(frozen=True)
class Adaptation(Generic[StateT]):
    """What one inner-loop step hands back for ``N`` tasks, and the next step takes in.

    Attributes:
        params: Detached per-task policy parameters with a leading axis ``N``: what the next
            round of episodes is sampled with.
        state: The agent's per-task state that the next step continues from (its own type,
            opaque to callers: pass it back unchanged); ``None`` where the agent keeps none, and
            before the first step.
    """

    params: Params
    state: StateT


class MetaBatch(NamedTuple):
    """What one outer-loop update learns from, for ``N`` tasks.

    Attributes:
        train: One ``Episodes`` per inner step, each sampled with the parameters before that step
            (the meta-parameters for the first).
        valid: Episodes sampled with the parameters after the last inner step.
    """

    train: list[Episodes]
    valid: Episodes


def config_from_mapping(config_class: type[ConfigT], values: Mapping[str, Any]) -> ConfigT:
    """Build a config dataclass from a mapping (a TOML table, a checkpoint), rejecting typos.

    Raises:
        ValueError: ``values`` has keys that are not fields of ``config_class``.
    """
    valid = sorted(f.name for f in fields(config_class))
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ValueError(f"unknown {config_class.__name__} fields {unknown}; valid: {valid}")
    return config_class(**values)


def check_config(config: DataclassInstance, rules: Mapping[str, tuple[bool, str]]) -> None:
    """Raise one error naming every field whose rule failed, with its value and requirement.

    Args:
        config: The config being validated (for its name and values).
        rules: ``field -> (holds, requirement)``, e.g. ``{"gamma": (0 <= g <= 1, "in [0, 1]")}``.
    """
    broken = [
        f"{name}={getattr(config, name)!r} (must be {requirement})"
        for name, (holds, requirement) in rules.items()
        if not holds
    ]
    if broken:
        raise ValueError(f"invalid {type(config).__name__}: {', '.join(broken)}")


class Agent(ABC, Generic[ConfigT]):
    """A meta-learner over a functional Gaussian policy.

    Args:
        policy: The policy whose parameters are the meta-parameters; moved to ``device``.
        config: Hyperparameters; ``None`` means the class's literature defaults.
        device: Where the policy and every computation live; ``None`` keeps the policy's device.

    Attributes:
        policy: The meta-policy (its module parameters are the meta-parameters).
        config: The resolved hyperparameters.
        device: The device of the policy and of all computation.
    """

    config_class: ClassVar[type[Any]]

    def __init__(
        self,
        policy: GaussianMLPPolicy,
        config: ConfigT | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.device = torch.device(device) if device is not None else _module_device(policy)
        self.policy = policy.to(self.device)
        self.config: ConfigT = config if config is not None else self.config_class()

    @property
    @abstractmethod
    def num_inner_steps(self) -> int:
        """How many times the training loop calls :meth:`adapt` (and samples) per task."""

    @abstractmethod
    def adapt(self, episodes: Episodes, previous: Adaptation[Any] | None = None) -> Adaptation[Any]:
        """One inner-loop update for every task of ``episodes``.

        Args:
            episodes: ``N`` tasks' episodes, sampled with ``previous.params``.
            previous: What the step before returned. For the first step: ``None`` (the
                meta-parameters), or ``Adaptation(params, None)`` as samplers start their rounds
                with the parameters they were given: a ``None`` state means no step yet, so the
                agent starts its per-task state afresh.

        Returns:
            The adapted parameters (leading axis ``N``, detached, ready for sampling) and the
            per-task state to pass back with them on the next step.
        """

    @abstractmethod
    def meta_update(self, batch: MetaBatch) -> dict[str, float]:
        """One outer-loop update of the meta-parameters; returns namespaced metrics."""

    def use_environments(self, env_fn: EnvFn, family: TaskFamily, seed: int) -> None:
        """Receive environments of the agent's own; :mod:`metarobot.run.build` calls it for all.

        Meta-learners learn only from the episodes the protocol samples, so this does nothing;
        baselines that pretrain by stepping environments themselves (multi-task PPO) override it.

        Args:
            env_fn: Factory of one env of the family that draws a train task at every reset.
            family: The run's task family.
            seed: Seeds whatever the agent does with them (derived from the run seed).
        """

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: policy parameters and the config as plain values."""
        return {"policy": self.policy.state_dict(), "config": asdict(self.config)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (the config included)."""
        self.config = config_from_mapping(type(self.config), state["config"])
        self.policy.load_state_dict(state["policy"])


def _module_device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device
