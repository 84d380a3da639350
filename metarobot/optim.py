"""TRPO's optimization pieces: flat parameter vectors, Hessian-vector products, CG, line search.

TRPO (Schulman et al., 2015) solves ``H x = g`` for the KL Hessian ``H`` without ever forming
``H``: conjugate gradient only needs products ``H v``, which double backpropagation provides. The
pieces are kept free of any agent so that every TRPO-style outer loop (MAML, multi-task baselines)
shares one tested implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import torch

from metarobot.policies import Params


def _flatten(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def flatten_params(params: Params) -> torch.Tensor:
    """Concatenate a parameter dict into one vector, in the dict's order (differentiable)."""
    return _flatten(params.values())


def unflatten_params(vector: torch.Tensor, like: Params) -> Params:
    """Split a vector made by :func:`flatten_params` back into ``like``'s names and shapes."""
    expected = sum(p.numel() for p in like.values())
    if vector.dim() != 1 or vector.numel() != expected:
        raise ValueError(f"vector of shape {tuple(vector.shape)} cannot fill {expected} parameters")
    chunks = vector.split([p.numel() for p in like.values()])
    return {name: chunk.view_as(p) for (name, p), chunk in zip(like.items(), chunks, strict=True)}


def hessian_vector_product(
    output: torch.Tensor, inputs: Sequence[torch.Tensor], damping: float = 0.0
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The map ``v -> (d^2 output / d inputs^2) v + damping * v`` by double backpropagation.

    The first derivative is taken once, with its graph kept, so that each product costs one
    backward pass. Damping keeps the system positive definite where the KL is flat in some
    directions, which conjugate gradient needs.

    Args:
        output: Scalar to differentiate twice; its graph must still be alive.
        inputs: Tensors (requiring grad) to differentiate with respect to.
        damping: Multiple of the identity added to the Hessian.
    """
    grad = _flatten(torch.autograd.grad(output, inputs, create_graph=True))

    def product(vector: torch.Tensor) -> torch.Tensor:
        second = torch.autograd.grad(grad @ vector, inputs, retain_graph=True)
        return _flatten(second) + damping * vector

    return product


def conjugate_gradient(
    hvp: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    iterations: int = 10,
    residual_tol: float = 1e-10,
) -> torch.Tensor:
    """Approximately solve ``A x = b`` for symmetric positive-definite ``A`` given only ``A v``.

    TRPO runs only a few iterations (10 in Schulman et al., 2015): the natural gradient direction
    needs to be good, not exact, and each iteration costs a Hessian-vector product.

    Args:
        hvp: The product ``v -> A v``.
        b: Right-hand side, a vector.
        iterations: Maximum number of iterations (products with ``A``).
        residual_tol: Stop once the squared residual norm falls below this.

    Returns:
        The approximate solution ``x`` (zero when ``b`` is already below the tolerance).
    """
    x = torch.zeros_like(b)
    residual = b.clone()
    direction = b.clone()
    residual_sq = residual @ residual
    for _ in range(iterations):
        # Checked before the step so that b = 0 returns 0 instead of dividing 0 by 0.
        if residual_sq.item() < residual_tol:
            break
        a_direction = hvp(direction)
        alpha = residual_sq / (direction @ a_direction)
        x = x + alpha * direction
        residual = residual - alpha * a_direction
        new_residual_sq = residual @ residual
        direction = residual + (new_residual_sq / residual_sq) * direction
        residual_sq = new_residual_sq
    return x


class LineSearchResult(NamedTuple):
    """Outcome of :func:`backtracking_line_search`.

    Attributes:
        params: The accepted point, or the starting point when every candidate was rejected.
        accepted: Whether a candidate met both conditions.
        steps: Candidates evaluated.
        step_fraction: Fraction of the full step taken (0 when rejected).
        loss: Loss at ``params``.
        kl: KL divergence at ``params`` (0 when rejected: nothing moved).
    """

    params: torch.Tensor
    accepted: bool
    steps: int
    step_fraction: float
    loss: float
    kl: float


def backtracking_line_search(
    evaluate: Callable[[torch.Tensor], tuple[float, float]],
    start: torch.Tensor,
    full_step: torch.Tensor,
    loss_before: float,
    max_kl: float,
    max_steps: int = 15,
    backtrack_ratio: float = 0.8,
) -> LineSearchResult:
    """TRPO's line search: shrink the step until the loss improves within the KL trust region.

    The quadratic KL model behind the full step is only local, so the step is tried at fractions
    ``1, r, r^2, ...`` and the first candidate that both lowers the loss and keeps
    ``kl <= max_kl`` is accepted; if none does, the parameters stay where they were.

    Args:
        evaluate: Maps a candidate parameter vector to ``(loss, kl)``, the KL measured from the
            policy at ``start``.
        start: Current parameter vector.
        full_step: The step to scale (already pointing downhill).
        loss_before: Loss at ``start``.
        max_kl: Trust-region radius.
        max_steps: Candidates to try.
        backtrack_ratio: Factor in ``(0, 1)`` shrinking the step after each rejection.
    """
    if max_steps < 1 or not 0.0 < backtrack_ratio < 1.0:
        raise ValueError(
            f"need max_steps >= 1 and 0 < backtrack_ratio < 1, got {max_steps}, {backtrack_ratio}"
        )
    rejected = LineSearchResult(start, False, 0, 0.0, loss_before, 0.0)
    # A non-finite step (e.g. 0/0 step size from a zero gradient) would only yield NaN candidates.
    if not bool(torch.isfinite(full_step).all()):
        return rejected
    fraction = 1.0
    for step in range(1, max_steps + 1):
        candidate = start + fraction * full_step
        loss, kl = evaluate(candidate)
        # NaN losses or KLs compare False and are rejected with everything else.
        if loss < loss_before and kl <= max_kl:
            return LineSearchResult(candidate, True, step, fraction, loss, kl)
        fraction *= backtrack_ratio
    return rejected._replace(steps=max_steps)
