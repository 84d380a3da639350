"""Film a trained run adapting to one task: a rollout after each chosen number of steps.

Adaptation follows ``metarobot evaluate`` (:mod:`metarobot.evaluation`): before step ``k`` the
sampler collects fresh episodes with the current parameters, seeded ``derive_seed(seed, k)``, and
``agent.adapt`` updates them. After each requested number of steps one more episode is played in
a render env and filmed. Every filmed episode starts from the same reset and, when stochastic,
draws the same action noise, so panels differ only by what adaptation changed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from metarobot.agent import Adaptation
from metarobot.policies import GaussianMLPPolicy, Params, detach_params, expand_params
from metarobot.rendering.compose import (
    GridLayout,
    PanelLabel,
    compose,
    contact_sheet,
    key_frame_indices,
)
from metarobot.rendering.scene import Stage
from metarobot.run.build import RunParts
from metarobot.seeding import derive_seed
from metarobot.tasks import Task

_RENDER_STREAM = 0x7E2D  # derive_seed key of filmed episodes, apart from the sampler's seeds


@dataclass(frozen=True)
class RenderedRollout:
    """One filmed episode.

    Attributes:
        adapt_step: Adaptation steps taken before the episode.
        images: ``[T + 1, H, W, 3]`` uint8 scene images; image ``t`` shows the state after ``t``
            steps (image 0 the reset).
        rewards: ``[T]`` reward of each step.
        success: ``[T + 1]`` whether the episode has succeeded by image ``t``; ``None`` for a
            family without a notion of success.
        captions: The task caption at each image.
        horizon: Episode length cap; ``T < horizon`` when the episode terminated early.
    """

    adapt_step: int
    images: np.ndarray
    rewards: np.ndarray
    success: np.ndarray | None
    captions: list[str]
    horizon: int

    @property
    def episode_return(self) -> float:
        """Undiscounted return of the episode."""
        return float(self.rewards.sum())

    @property
    def succeeded(self) -> bool | None:
        """Whether the episode succeeded at any step (``None`` without a notion of success)."""
        return None if self.success is None else bool(self.success[-1])

    def label(self, t: int) -> PanelLabel:
        """The panel label at video frame ``t`` (held at the last image once the episode ended)."""
        last = len(self.images) - 1
        i = min(t, last)
        progress = f"t {i}/{self.horizon}" if i < last or last == self.horizon else f"ended t {i}"
        return PanelLabel(
            title=f"adapt step {self.adapt_step} | {progress} | "
            f"return {float(self.rewards[:i].sum()):.1f}",
            detail=self.captions[i],
            success=None if self.success is None else bool(self.success[i]),
        )


@dataclass(frozen=True)
class AdaptationVideo:
    """The filmed episodes of one task side by side: a sequence of composed grid frames.

    ``len(video)`` is the longest episode's image count; ``video[t]`` composes frame ``t`` on
    demand (``[H, W, 3]`` uint8, size ``video.layout.shape``), so a long video is never held
    twice in memory; ``np.stack(list(video))`` gives them all.

    Attributes:
        task: The task.
        rollouts: One filmed episode per requested number of adaptation steps, in order.
        layout: Where each episode's panel lies in a frame.
        frame_rate: Frames per second of simulated time (one frame per control step), the
            rate at which the video plays in real time.
    """

    task: Task
    rollouts: list[RenderedRollout]
    layout: GridLayout
    frame_rate: float

    def __len__(self) -> int:
        return max(len(rollout.images) for rollout in self.rollouts)

    def __getitem__(self, t: int) -> np.ndarray:
        if not -len(self) <= t < len(self):
            raise IndexError(f"frame {t} out of range for {len(self)} frames")
        t %= len(self)
        images = [r.images[min(t, len(r.images) - 1)] for r in self.rollouts]
        return compose(self.layout, images, [r.label(t) for r in self.rollouts])

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[t] for t in range(len(self)))

    def contact_sheet(self, count: int) -> np.ndarray:
        """``count`` key frames, evenly spaced from first to last, stacked top to bottom."""
        return contact_sheet([self[t] for t in key_frame_indices(len(self), count)])


def _play(
    stage: Stage,
    policy: GaussianMLPPolicy,
    params: Params,
    adapt_step: int,
    seed: int,
    deterministic: bool,
    bar: tqdm[Any],
) -> RenderedRollout:
    """Film one episode of ``stage``'s task with ``params`` (a task axis of size one)."""
    device = next(iter(params.values())).device
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(seed, _RENDER_STREAM, 1))
    env = stage.env
    low, high = env.action_space.low, env.action_space.high  # type: ignore[attr-defined]
    obs, info = stage.reset(seed=derive_seed(seed, _RENDER_STREAM))
    images, captions = [stage.render()], [stage.caption(info)]
    rewards: list[float] = []
    success: list[bool] = [False]
    has_success = False
    for _ in range(env.horizon):
        with torch.no_grad():
            observation = torch.as_tensor(obs, dtype=torch.float32, device=device).view(1, 1, -1)
            dist = policy.batched_distribution(observation, params)
            action = dist.loc
            if not deterministic:
                noise = torch.randn(action.shape, generator=generator, device=device)
                action = action + dist.scale * noise
        obs, reward, terminated, truncated, info = env.step(
            np.clip(action.view(-1).cpu().numpy(), low, high)
        )
        rewards.append(float(reward))
        has_success = has_success or "success" in info
        success.append(success[-1] or bool(info.get("success", False)))
        images.append(stage.render())
        captions.append(stage.caption(info))
        bar.update()
        if terminated or truncated:
            break
    bar.update(env.horizon - len(rewards))
    return RenderedRollout(
        adapt_step=adapt_step,
        images=np.stack(images),
        rewards=np.asarray(rewards),
        success=np.asarray(success) if has_success else None,
        captions=captions,
        horizon=env.horizon,
    )


def render_rollouts(
    parts: RunParts,
    task: Task,
    adapt_steps: Sequence[int],
    *,
    seed: int,
    rollouts: int | None = None,
    deterministic: bool = False,
    width: int = 480,
    height: int = 360,
    progress: bool = False,
) -> AdaptationVideo:
    """Adapt the run's agent to ``task`` and film an episode after each of ``adapt_steps``.

    Args:
        parts: A loaded run (:func:`metarobot.run.directory.load_run`).
        task: A task of the run's family (``select_task`` resolves ``"test:7"`` and such).
        adapt_steps: Numbers of adaptation steps to film, e.g. ``(0, 1, 3)``.
        seed: Seeds the adaptation rollouts and the filmed episodes.
        rollouts: Episodes sampled per adaptation step (default: the run's episodes per task).
        deterministic: Film the mean action instead of a (seeded) sampled one.
        width: Scene width of each panel in pixels.
        height: Scene height of each panel in pixels.
        progress: Show a progress bar.

    Returns:
        The frames, one panel per entry of ``adapt_steps`` (sorted, duplicates dropped).

    Raises:
        ValueError: On a task of another family, negative or no steps, or a bad size or count.
        HeadlessGLError: No offscreen OpenGL backend works.
    """
    steps = sorted(set(adapt_steps))
    if not steps or steps[0] < 0:
        raise ValueError(f"adapt_steps must be non-negative step counts, got {list(adapt_steps)}")
    rollouts = parts.config.episodes_per_task if rollouts is None else rollouts
    if rollouts < 1:
        raise ValueError(f"rollouts must be >= 1, got {rollouts}")
    parts.family.validate(task)
    agent = parts.agent
    meta = expand_params(detach_params(agent.policy.meta_parameters()), 1)
    adaptation: Adaptation[Any] = Adaptation(meta, None)
    config = parts.config
    stage = Stage(config.family, task, width, height, config.horizon, config.env_options)
    filmed = []
    total = len(steps) * stage.env.horizon + steps[-1]
    try:
        with tqdm(total=total, disable=not progress, unit="step", desc="render") as bar:
            for step in range(steps[-1] + 1):
                if step in steps:
                    bar.set_description(f"film after {step} adaptation steps")
                    filmed.append(
                        _play(
                            stage, agent.policy, adaptation.params, step, seed, deterministic, bar
                        )
                    )
                if step < steps[-1]:
                    bar.set_description(f"adaptation step {step + 1}")
                    episodes = parts.sampler.sample(
                        [task], adaptation.params, rollouts, seed=derive_seed(seed, step)
                    )
                    adaptation = agent.adapt(episodes, adaptation)
                    bar.update()
    finally:
        stage.close()
    layout = GridLayout.for_panels(len(filmed), width, height)
    return AdaptationVideo(task, filmed, layout, frame_rate=1.0 / stage.env.dt)
