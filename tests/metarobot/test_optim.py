import pytest
import torch

from metarobot.optim import (
    backtracking_line_search,
    conjugate_gradient,
    flatten_params,
    hessian_vector_product,
    unflatten_params,
)


def spd_matrix(size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(size, size, generator=g, dtype=torch.float64)
    return a @ a.T + size * torch.eye(size, dtype=torch.float64)


class CountingProduct:
    """``v -> a @ v`` that counts its calls."""

    def __init__(self, a: torch.Tensor) -> None:
        self.a = a
        self.calls = 0

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.a @ v


def test_conjugate_gradient_solves_spd_system() -> None:
    a = spd_matrix(8, 0)
    b = torch.randn(8, dtype=torch.float64)
    hvp = CountingProduct(a)
    x = conjugate_gradient(hvp, b, iterations=20, residual_tol=1e-20)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-8, atol=1e-10)
    # In exact arithmetic CG converges in at most `size` iterations.
    assert hvp.calls <= 9


def test_conjugate_gradient_respects_iteration_budget() -> None:
    hvp = CountingProduct(spd_matrix(20, 1))
    conjugate_gradient(hvp, torch.ones(20, dtype=torch.float64), iterations=3, residual_tol=0.0)
    assert hvp.calls == 3


def test_conjugate_gradient_of_zero_rhs_is_zero_without_nan() -> None:
    x = conjugate_gradient(lambda v: 2 * v, torch.zeros(5))
    assert torch.equal(x, torch.zeros(5))


def test_flatten_unflatten_round_trip_keeps_order_shapes_and_gradients() -> None:
    params = {"w": torch.randn(3, 2, requires_grad=True), "b": torch.randn(3), "s": torch.randn(())}
    vector = flatten_params(params)
    assert vector.shape == (10,)
    torch.testing.assert_close(vector[:6], params["w"].reshape(-1))
    back = unflatten_params(vector, params)
    assert list(back) == ["w", "b", "s"]
    for name in params:
        torch.testing.assert_close(back[name], params[name])
    (grad,) = torch.autograd.grad(back["w"].sum() * 2, params["w"])
    torch.testing.assert_close(grad, torch.full((3, 2), 2.0))


def test_unflatten_rejects_wrong_size() -> None:
    with pytest.raises(ValueError, match="cannot fill 6"):
        unflatten_params(torch.zeros(5), {"w": torch.zeros(2, 3)})


def test_hessian_vector_product_of_quadratic_with_damping() -> None:
    a = spd_matrix(4, 2)
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, dtype=torch.float64, requires_grad=True)
    # The cross term makes the Hessian over (x, y) non-block-diagonal.
    output = 0.5 * x @ a @ x + (x[:3] * y).sum() * x[0]
    hvp = hessian_vector_product(output, (x, y), damping=0.1)
    full = torch.autograd.functional.hessian(
        lambda xx, yy: 0.5 * xx @ a @ xx + (xx[:3] * yy).sum() * xx[0], (x.detach(), y.detach())
    )
    hessian = torch.cat([torch.cat([full[i][j] for j in range(2)], dim=1) for i in range(2)])
    v = torch.randn(7, dtype=torch.float64)
    torch.testing.assert_close(hvp(v), hessian @ v + 0.1 * v)
    # The product can be taken repeatedly (conjugate gradient needs that).
    torch.testing.assert_close(hvp(2 * v), 2 * (hessian @ v + 0.1 * v))


def quadratic(x: torch.Tensor) -> tuple[float, float]:
    """Loss (x - 1)^2 summed; 'KL' = squared distance from the origin."""
    return float(((x - 1) ** 2).sum()), float((x**2).sum())


def test_line_search_accepts_full_step_when_it_improves_within_trust_region() -> None:
    start = torch.zeros(2)
    result = backtracking_line_search(quadratic, start, torch.full((2,), 0.5), 2.0, max_kl=1.0)
    assert result.accepted and result.steps == 1 and result.step_fraction == 1.0
    torch.testing.assert_close(result.params, torch.full((2,), 0.5))
    assert result.loss == pytest.approx(0.5) and result.kl == pytest.approx(0.5)


def test_line_search_backtracks_until_kl_constraint_holds() -> None:
    # Full step: kl = 2 * 1.0^2 = 2 > 0.5; fractions 0.8 (kl 1.28), 0.64 (0.82), 0.512 (0.52),
    # 0.4096 (0.34) is the first inside.
    result = backtracking_line_search(
        quadratic, torch.zeros(2), torch.ones(2), 2.0, max_kl=0.5, backtrack_ratio=0.8
    )
    assert result.accepted and result.steps == 5
    assert result.step_fraction == pytest.approx(0.8**4)
    assert result.kl <= 0.5


def test_line_search_rejects_and_keeps_start_when_nothing_improves() -> None:
    start = torch.full((2,), 1.0)  # already optimal: no candidate lowers the loss
    evaluations = []

    def evaluate(x: torch.Tensor) -> tuple[float, float]:
        evaluations.append(x)
        return quadratic(x)

    result = backtracking_line_search(evaluate, start, torch.ones(2), 0.0, 1e9, max_steps=7)
    assert not result.accepted and result.steps == 7 and len(evaluations) == 7
    assert torch.equal(result.params, start) and result.step_fraction == 0.0


def test_line_search_rejects_nan_losses_and_non_finite_steps() -> None:
    nan_result = backtracking_line_search(
        lambda x: (float("nan"), 0.0), torch.zeros(2), torch.ones(2), 1.0, 1.0, max_steps=3
    )
    assert not nan_result.accepted and nan_result.steps == 3

    def fail(x: torch.Tensor) -> tuple[float, float]:
        raise AssertionError("a non-finite step must not be evaluated")

    step = torch.tensor([float("nan"), 1.0])
    result = backtracking_line_search(fail, torch.zeros(2), step, 1.0, 1.0)
    assert not result.accepted and result.steps == 0


@pytest.mark.parametrize(("max_steps", "ratio"), [(0, 0.8), (5, 1.0), (5, 0.0)])
def test_line_search_validates_arguments(max_steps: int, ratio: float) -> None:
    with pytest.raises(ValueError, match="backtrack_ratio"):
        backtracking_line_search(
            quadratic, torch.zeros(1), torch.ones(1), 1.0, 1.0, max_steps, ratio
        )
