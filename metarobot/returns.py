"""Returns, advantages and the linear feature baseline of the MAML/TRPO literature.

Everything works on ``[N tasks, E episodes, T steps]`` tensors with a ``masks`` tensor of the same
shape (1 for real steps, 0 for padding after an episode ended), on whatever device the tensors
live, so one call serves a whole meta-batch. Padding never contributes to a return, a baseline fit
or an advantage statistic (not even inf or NaN left there by unstable physics), and every output
is zero on padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metarobot.episodes import Episodes
from metarobot.threads import cpu_threads


def zero_padding(values: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``values`` with padding set to 0, even where the padding holds inf or NaN.

    Selecting rather than multiplying by the mask matters after unstable physics: ``NaN * 0`` is
    NaN and would poison every sum over time.
    """
    return torch.where(masks > 0, values, 0.0)


def task_mean(values: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over each task's valid steps, ``[N]``.

    Averaging over valid steps (rather than per episode, then over episodes) weighs every real
    transition equally, whatever the episode lengths; a task without valid steps gets 0.
    """
    dims = tuple(range(1, values.dim()))
    return zero_padding(values, masks).sum(dim=dims) / masks.sum(dim=dims).clamp_min(1.0)


def _per_step(per_task: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """View a per-task ``[N]`` tensor so that it broadcasts against ``like``, ``[N, ...]``."""
    return per_task.view(-1, *([1] * (like.dim() - 1)))


def _discounted_cumsum(values: torch.Tensor, masks: torch.Tensor, discount: float) -> torch.Tensor:
    """``out[t] = sum_{k >= t} discount^(k - t) * values[k]`` over valid steps, 0 on padding.

    A reverse scan over time: ``T`` small kernels, exact for any mask pattern, and free of the
    ``discount^T`` under/overflow a closed-form matrix version would meet on long horizons.
    """
    if values.shape != masks.shape:
        raise ValueError(f"values {tuple(values.shape)} and masks {tuple(masks.shape)} differ")
    values = zero_padding(values, masks)
    running = torch.zeros_like(values[..., 0])
    reversed_out = []
    for t in reversed(range(values.shape[-1])):
        running = (values[..., t] + discount * running) * masks[..., t]
        reversed_out.append(running)
    return torch.stack(reversed_out[::-1], dim=-1)


def discounted_returns(rewards: torch.Tensor, masks: torch.Tensor, gamma: float) -> torch.Tensor:
    """Discounted reward-to-go of every step, ``[N, E, T] -> [N, E, T]``.

    Args:
        rewards: ``[N, E, T]`` rewards.
        masks: ``[N, E, T]``, 1 for real steps and 0 for padding.
        gamma: Discount factor in ``[0, 1]``.

    Returns:
        ``sum_{k >= t} gamma^(k - t) r_k`` over the episode's remaining valid steps; 0 on padding.
    """
    return _discounted_cumsum(rewards, masks, gamma)


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    masks: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """Generalized advantage estimation (Schulman et al., 2016), ``[N, E, T]``.

    The value after an episode's last valid step is taken as 0: episodes here are finite-horizon
    (as in MAML's locomotion benchmarks), so a time-limit cut is treated as the end of the task
    rather than bootstrapped. With ``lam = 1`` this is exactly ``discounted_returns - values``.

    Args:
        rewards: ``[N, E, T]`` rewards.
        values: ``[N, E, T]`` state-value estimates (values on padding are ignored).
        masks: ``[N, E, T]``, 1 for real steps and 0 for padding.
        gamma: Discount factor in ``[0, 1]``.
        lam: GAE's bias/variance trade-off in ``[0, 1]``.
    """
    values = zero_padding(values, masks)
    next_values = torch.cat([values[..., 1:], torch.zeros_like(values[..., :1])], dim=-1)
    deltas = rewards + gamma * next_values - values
    return _discounted_cumsum(deltas, masks, gamma * lam)


def normalize_advantages(
    advantages: torch.Tensor, masks: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """Standardize advantages per task over that task's valid steps; 0 on padding.

    Per task rather than over the whole meta-batch, because reward scales differ between tasks
    (a fast target velocity earns larger penalties) and each task takes its own inner step.
    """
    centered = advantages - _per_step(task_mean(advantages, masks), advantages)
    std = task_mean(centered.square(), masks).sqrt()
    return zero_padding(centered / (_per_step(std, advantages) + eps), masks)


@dataclass(frozen=True)
class LinearFeatureBaseline:
    """The time-varying linear value baseline of Duan et al. (2016), as in rllab and MAML.

    Features of a step are ``[o, o^2, t, t^2, t^3, 1]`` with ``o`` the observation clipped to
    ``[-10, 10]`` and ``t = timestep / 100``; the polynomial in time lets the baseline capture the
    shrinking reward-to-go of a finite horizon. Each task gets its own ridge-regression fit to its
    discounted returns, all tasks solved at once as a ``[N, F, F]`` batch.

    The stateless design (fit and predict in one call) is deliberate: MAML refits on every batch of
    episodes, so keeping coefficients around would only invite predicting with a stale fit.

    Attributes:
        reg_coeff: Initial ridge coefficient added to the normal equations' diagonal.
        max_attempts: Solves tried per task, the coefficient multiplied by 10 after each failure
            (a singular or non-finite solve), as rllab does; 5 attempts reach ``1e-5 * 10^4``.
    """

    reg_coeff: float = 1e-5
    max_attempts: int = 5

    def features(self, observations: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Regression features ``[N, E, T, 2 * obs_dim + 4]``, zero rows on padding."""
        obs = observations.clamp(-10.0, 10.0)
        steps = torch.arange(masks.shape[-1], device=obs.device, dtype=obs.dtype) / 100.0
        time = steps.view(*([1] * (masks.dim() - 1)), -1, 1).expand(*masks.shape, 1)
        ones = torch.ones_like(time)
        feats = torch.cat([obs, obs.square(), time, time**2, time**3, ones], dim=-1)
        # Zero rows drop out of X^T X and X^T y, which is what excluding padding means.
        return zero_padding(feats, masks.unsqueeze(-1))

    def fit(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-task ridge-regression coefficients ``[N, F]``.

        Args:
            features: ``[N, ..., F]`` features, padding already zero rows (see :meth:`features`).
            targets: ``[N, ...]`` regression targets.

        Raises:
            RuntimeError: A task's normal equations stay unsolvable at the largest coefficient.
        """
        design = features.flatten(1, -2)
        gram = design.transpose(1, 2) @ design
        moment = (design.transpose(1, 2) @ targets.flatten(1).unsqueeze(-1)).squeeze(-1)
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        reg = torch.full(gram.shape[:1], self.reg_coeff, dtype=gram.dtype, device=gram.device)
        coeffs = torch.zeros_like(moment)
        solved = torch.zeros(gram.shape[:1], dtype=torch.bool, device=gram.device)
        # One CPU thread: torch's batched LU runs MKL's threaded getrf inside its own parallel
        # loop over tasks, which with 2+ threads on a busy CPU spins for minutes and corrupts
        # arguments ("Parameter 6 was incorrect on entry to DLASWP"); these systems
        # (2 * obs_dim + 4 unknowns) take well under a millisecond on one core.
        with cpu_threads(gram.device, 1):
            for _ in range(self.max_attempts):
                solution, info = torch.linalg.solve_ex(gram + reg.view(-1, 1, 1) * eye, moment)
                newly = (info == 0) & solution.isfinite().all(dim=-1) & ~solved
                coeffs = torch.where(newly.unsqueeze(-1), solution, coeffs)
                solved |= newly
                if bool(solved.all()):
                    return coeffs
                reg = torch.where(solved, reg, reg * 10.0)
        failed = (~solved).nonzero().flatten().tolist()
        raise RuntimeError(
            f"LinearFeatureBaseline: normal equations of tasks {failed} are unsolvable even with "
            f"ridge coefficient {reg.max().item():.1e}; check the observations for inf/NaN"
        )

    def fit_and_predict(self, episodes: Episodes, gamma: float) -> torch.Tensor:
        """Fit each task on its discounted returns and return its values ``[N, E, T]``.

        The fit runs in float64 because the normal equations square the features' condition
        number (``t^3`` next to a constant and clipped observations); values come back in the
        rewards' dtype, 0 on padding.
        """
        masks = episodes.masks.double()
        features = self.features(episodes.observations.double(), masks)
        returns = discounted_returns(episodes.rewards.double(), masks, gamma)
        coeffs = self.fit(features, returns)
        values = torch.einsum("n...f,nf->n...", features, coeffs)
        return values.to(episodes.rewards.dtype)


def compute_advantages(
    episodes: Episodes,
    gamma: float,
    gae_lambda: float,
    baseline: LinearFeatureBaseline | None = None,
) -> torch.Tensor:
    """Per-task normalized GAE advantages with a freshly fitted linear baseline, ``[N, E, T]``.

    This is the advantage estimator of MAML's policy-gradient inner and outer losses; with
    ``gae_lambda = 1`` it is the normalized ``discounted return - baseline``.
    """
    baseline = baseline if baseline is not None else LinearFeatureBaseline()
    values = baseline.fit_and_predict(episodes, gamma)
    advantages = gae(episodes.rewards, values, episodes.masks, gamma, gae_lambda)
    return normalize_advantages(advantages, episodes.masks)
