"""FiniteDifference at scale (issue 16): staircases, the measured rounding, non-finite outputs
and an fn that raises at a perturbed point. Each test failed on the engine before issue 16."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import elementwise_problem, problem_with_constants

import gradcheck
from gradcheck.oracles import FiniteDifference, Probes

F64 = torch.float64


def _points(count: int = 8, seed: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, generator=generator, dtype=F64) * 4 - 2


def _estimate(fn, x: torch.Tensor, v: torch.Tensor | None = None):
    v = torch.ones_like(x) if v is None else v
    return FiniteDifference().estimate(elementwise_problem(fn, x, v), Probes(x.numel()))


# -- (1) staircases: no estimate is confident against the step sequence -----------------------

STAIRCASES = {
    "round3": lambda t: torch.round(t, decimals=3),
    "floor": lambda t: torch.floor(t * 1000) / 1000,
    "ceil": lambda t: torch.ceil(t * 1000) / 1000,
}


@pytest.mark.parametrize("name", sorted(STAIRCASES))
def test_a_staircase_has_derivative_zero_not_the_coarse_steps_slope(name: str) -> None:
    # Before: two coarse steps agreed by coincidence (about 1 +/- 1e-11, the staircase's average
    # slope) while every finer step gave exactly 0.
    x = _points()
    estimate = _estimate(STAIRCASES[name], x)
    for p in range(x.numel()):
        assert estimate.reasons[p] is None, (float(x[p]), estimate.reasons[p])
        assert estimate.values[p] == 0.0, (float(x[p]), estimate.values[p], estimate.errors[p])
        assert estimate.errors[p] < 1e-8


def test_round_passes_check_function_with_autograds_zero() -> None:
    result = gradcheck.check_function(lambda t: torch.round(t, decimals=3), _points(16, seed=5))
    assert result.passed, result.message


def test_a_staircase_whose_quotients_grow_at_the_last_moving_steps_is_not_a_slope() -> None:
    # OpInfo round.decimals_3 sample 0, x = 2.04739: with steps relative to |x| the first three
    # quotients agree (0.976853 +/- 5e-12), then grow like 1/h (1.95, 3.91) and drop to 0. The
    # growing last change once counted as truncation room, so the finest step's 0 "agreed".
    fn = lambda t: torch.round(t, decimals=3)  # noqa: E731
    x = torch.tensor([2.04739], dtype=torch.float64)
    result = gradcheck.check_function(fn, x)
    assert result.passed, result.message
    estimate = _estimate(fn, x)
    assert estimate.values[0] == 0.0 and estimate.errors[0] < 1e-8, estimate


def test_a_sequence_that_disagrees_with_its_extrapolation_is_inconclusive() -> None:
    # The finest steps still move (slope 1e-6) but disagree with two coarse steps that agree
    # (about 1 +/- 5e-12): no staircase, no derivative either.
    estimate = _estimate(lambda t: torch.round(t, decimals=3) + 1e-6 * t, _points()[2:3])
    assert estimate.reasons[0] is not None and "disagrees" in estimate.reasons[0]


# -- (2) the rounding model: measured, and at the output's own precision ----------------------

FLOAT32_INSIDE = {
    "float32 output": lambda a: a.float().tanh(),
    "float32 tanh inside": lambda a: a.float().tanh().double(),
    "float32 sin inside": lambda a: a.float().sin().double(),
    "float32 exp inside": lambda a: a.float().exp().double(),
    "float32 matmul inside": lambda a: (a.float().reshape(4, 4) @ a.float().reshape(4, 4)).double(),
}


@pytest.mark.parametrize("name", sorted(FLOAT32_INSIDE))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_float32_inside_fn_does_not_fail_a_correct_gradient(name: str, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(16, generator=generator, dtype=F64) * (0.3 + seed)
    result = gradcheck.check_function(FLOAT32_INSIDE[name], x, seed=seed)
    assert result.passed, result.message


@pytest.mark.parametrize("seed", [3, 4, 6])
def test_cancellation_in_a_linear_fn_does_not_fool_the_rounding_estimate(seed: int) -> None:
    # _softmax_backward_data(g, y) = y * (g - sum(g * y)): with g near a constant 10**k the
    # difference cancels; the real rounding was up to 24x the assumed 2*eps*|out|.
    generator = torch.Generator().manual_seed(seed)
    n = [4, 8, 16, 32][seed % 4]
    y = torch.softmax(torch.randn(n, generator=generator, dtype=F64) * 4, -1)
    grad = 10.0 ** (seed % 5) + torch.randn(n, generator=generator, dtype=F64) * 1e-3
    result = gradcheck.check_function(
        lambda g: torch._softmax_backward_data(g, y, -1, F64), grad, seed=seed
    )
    assert result.passed, result.message


def test_a_large_offset_that_cancels_inside_fn_is_measured() -> None:
    result = gradcheck.check_function(lambda a: (a + 1e6) - 1e6 + a.sin(), _points(16))
    assert result.passed, result.message


class _Scaled(torch.autograd.Function):
    """``f(x)`` whose backward is off by the relative error ``rel``."""

    @staticmethod
    def forward(ctx, x, f, df, rel):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(x)
        ctx.df, ctx.rel = df, rel
        return f(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def]
        (x,) = ctx.saved_tensors
        return g * ctx.df(x) * (1.0 + ctx.rel), None, None, None


@pytest.mark.parametrize(
    ("f", "df"),
    [
        (torch.sin, torch.cos),
        (torch.exp, torch.exp),
        (torch.tanh, lambda x: 1 - torch.tanh(x) ** 2),
        (lambda x: x**3, lambda x: 3 * x**2),
    ],
    ids=["sin", "exp", "tanh", "cube"],
)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_measured_noise_still_catches_a_1e_6_relative_error(f, df, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(16, generator=generator, dtype=F64) * (0.3 + seed)
    correct = gradcheck.check_function(lambda a: _Scaled.apply(a, f, df, 0.0), x, seed=seed)
    wrong = gradcheck.check_function(lambda a: _Scaled.apply(a, f, df, 1e-6), x, seed=seed)
    assert correct.passed, correct.message
    assert wrong.status == "failed", wrong.message


# -- (3) non-finite output elements with v = 0, and -inf constant inputs ----------------------


def _with_non_finite(value: float):
    def fn(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t.sin(), torch.full((1,), value, dtype=t.dtype)])

    return fn


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_output_element_with_zero_cotangent_leaves_the_rest_decided(
    value: float,
) -> None:
    # Before: every element was inconclusive ("the function is not finite at the input").
    x = _points(6)
    v = torch.randn(7, generator=torch.Generator().manual_seed(1), dtype=F64)
    v[-1] = 0.0
    estimate = _estimate(_with_non_finite(value), x, v)
    for p in range(x.numel()):
        assert estimate.reasons[p] is None, estimate.reasons[p]
        exact = float(v[p] * torch.cos(x[p]))
        assert abs(estimate.values[p] - exact) <= estimate.errors[p] + 1e-15, p


def test_a_non_finite_output_element_that_contributes_stops_the_estimate() -> None:
    x = _points(3)
    estimate = _estimate(_with_non_finite(math.nan), x, torch.ones(4, dtype=F64))
    assert all(reason and "not finite at the input" in reason for reason in estimate.reasons)


def test_a_domain_edge_is_still_dropped_next_to_a_left_out_nan() -> None:
    # log at 1e-5: steps that leave its domain make an element with v != 0 NaN and are dropped.
    x = torch.tensor([1e-5], dtype=F64)

    def fn(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t.log(), torch.full((1,), math.nan, dtype=t.dtype)])

    estimate = _estimate(fn, x, torch.tensor([1.0, 0.0], dtype=F64))
    assert estimate.reasons[0] is None
    assert math.isclose(estimate.values[0], 1e5, rel_tol=1e-9)


def _autograd(fn, x: torch.Tensor, constants: tuple[torch.Tensor, ...], v: torch.Tensor):
    leaf = x.clone().requires_grad_(True)
    (fn(leaf, *constants) * v).sum().backward()
    assert leaf.grad is not None
    return leaf.grad.reshape(-1).tolist()


@pytest.mark.parametrize(
    "fn",
    [
        lambda a, mask: torch._safe_softmax(a + mask, -1),
        lambda a, mask: a.sin() + mask,
    ],
    ids=["safe_softmax", "plus_mask"],
)
def test_a_constant_minus_inf_mask_argument_is_no_obstacle(fn) -> None:
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, generator=generator, dtype=F64)
    mask = torch.zeros(2, 3, dtype=F64)
    mask[0, 1] = -math.inf
    mask[1, :] = -math.inf  # a fully masked row
    v = torch.randn(2, 3, generator=generator, dtype=F64)
    v = torch.where(torch.isfinite(fn(x, mask)), v, 0.0)  # as check_function sets it
    estimate = FiniteDifference().estimate(problem_with_constants(fn, x, (mask,), v), Probes(6))
    expected = _autograd(fn, x, (mask,), v)
    for p in range(6):
        assert estimate.reasons[p] is None, estimate.reasons[p]
        assert abs(estimate.values[p] - expected[p]) <= 4 * estimate.errors[p] + 1e-13, p


# -- (4) fn raising at a perturbed point --------------------------------------------------------


def test_fn_raising_at_large_steps_only_drops_those_steps() -> None:
    x = _points(4)
    limit = float(x[0]) + 4e-4

    def fn(t: torch.Tensor) -> torch.Tensor:
        if float(t[0]) > limit:
            raise ValueError("out of range")
        return t.sin()

    estimate = _estimate(fn, x)
    assert estimate.reasons[0] is None
    assert abs(estimate.values[0] - math.cos(float(x[0]))) <= estimate.errors[0] + 1e-15


def test_fn_raising_at_every_step_is_inconclusive_with_the_exception_named() -> None:
    # Before: the ValueError escaped as a traceback.
    x = _points(4)
    start = float(x[0])

    def fn(t: torch.Tensor) -> torch.Tensor:
        if float(t[0]) > start:
            raise ValueError("out of range")
        return t.sin()

    estimate = _estimate(fn, x)
    assert estimate.reasons[0] is not None
    assert "fn raised ValueError at x + 0.001*u: out of range" in estimate.reasons[0]
    assert all(reason is None for reason in estimate.reasons[1:])
