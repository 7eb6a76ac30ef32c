"""Every oracle against the table of closed-form derivatives, before it judges anything.

Each oracle must land within its own error estimate of the exact derivative (the closed form
evaluated in float64, whose own rounding is allowed for with a few ulps), and must mark exactly
the kink points of the table, with the true subgradient interval inside its bounds.
"""

from __future__ import annotations

import math

import mpmath
import pytest
import torch
from helpers import elementwise_problem

import gradcheck
from gradcheck.oracles import FiniteDifference, Forward, Probes, Symbolic
from gradcheck.scenarios.calculus import KNOWN_DERIVATIVES, KnownDerivative
from gradcheck.tolerances import TOLERANCES

ULPS = 2 * torch.finfo(torch.float64).eps
FORWARD = TOLERANCES[(torch.float64, "forward")]


def _truth(entry: KnownDerivative, x: torch.Tensor, v: torch.Tensor) -> list[float]:
    """``v * f'(x)`` evaluated at 50 digits, then rounded once."""
    with mpmath.workdps(50):
        return [
            float(mpmath.mpf(w) * entry.derivative(mpmath.mpf(p)))
            for w, p in zip(v.tolist(), x.tolist())
        ]


def _oracles(entry: KnownDerivative):
    return {
        "finite_difference": FiniteDifference(),
        "sympy": Symbolic(entry.expr),
        "forward": Forward(),
    }


@pytest.mark.parametrize("oracle_name", ["finite_difference", "sympy", "forward"])
@pytest.mark.parametrize("entry", KNOWN_DERIVATIVES, ids=lambda e: e.id)
def test_oracle_within_its_error_estimate(entry: KnownDerivative, oracle_name: str) -> None:
    x = torch.tensor(entry.points, dtype=torch.float64)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    problem = elementwise_problem(entry.fn, x, v)
    estimate = _oracles(entry)[oracle_name].estimate(problem, Probes(count=x.numel()))
    truth = _truth(entry, x, v)
    for p, point in enumerate(entry.points):
        assert estimate.reasons[p] is None, (point, estimate.reasons[p])
        kink = (entry.kinks or {}).get(point)
        if kink is not None and oracle_name != "forward":
            low, high = sorted((v[p].item() * kink[0], v[p].item() * kink[1]))
            assert estimate.lower[p] is not None, f"kink at {point} not marked"
            assert estimate.lower[p] <= low + estimate.errors[p] + 1e-12
            assert estimate.upper[p] >= high - estimate.errors[p] - 1e-12
            continue
        if kink is not None:
            continue  # forward mode sees one side of the kink only; no claim to check
        assert estimate.lower[p] is None, f"smooth point {point} marked as a kink"
        error = abs(estimate.values[p] - truth[p])
        allowed = estimate.errors[p] + ULPS * abs(truth[p]) + 1e-300
        if oracle_name == "forward":
            # Forward mode evaluates derivative formulas in float64 (1 - tanh**2 cancels); its
            # estimate covers the contraction only, and its table row covers the formulas.
            allowed += FORWARD.allowed(truth[p], 0.0)
        assert error <= allowed, (point, estimate.values[p], truth[p], estimate.errors[p])


@pytest.mark.parametrize("entry", KNOWN_DERIVATIVES, ids=lambda e: e.id)
def test_finite_difference_error_estimate_is_informative(entry: KnownDerivative) -> None:
    """The estimate is not vacuous: far below 1e-6 relative wherever the derivative is not tiny."""
    x = torch.tensor(entry.points, dtype=torch.float64)
    v = torch.ones_like(x)
    estimate = FiniteDifference().estimate(elementwise_problem(entry.fn, x, v), Probes(x.numel()))
    for p, point in enumerate(entry.points):
        magnitude = abs(float(entry.derivative(mpmath.mpf(point))))
        if magnitude > 1e-3 and point not in (entry.kinks or {}):
            assert estimate.errors[p] < 1e-8 * magnitude, (point, estimate.errors[p])


def test_central_difference_at_relu_kink_is_flagged_not_trusted() -> None:
    """relu's central difference at 0 is 0.5 for every step: it must not pass as converged."""
    x = torch.zeros(1, dtype=torch.float64)
    estimate = FiniteDifference().estimate(
        elementwise_problem(torch.relu, x, torch.ones(1, dtype=torch.float64)), Probes(1)
    )
    assert estimate.values[0] == pytest.approx(0.5)
    assert (estimate.lower[0], estimate.upper[0]) == pytest.approx((0.0, 1.0), abs=1e-9)


def test_jump_is_inconclusive() -> None:
    """A discontinuity is neither a kink nor a derivative: the oracle says it cannot decide."""
    x = torch.zeros(1, dtype=torch.float64)
    problem = elementwise_problem(
        lambda t: torch.sign(t) + t, x, torch.ones(1, dtype=torch.float64)
    )
    estimate = FiniteDifference().estimate(problem, Probes(1))
    assert estimate.reasons[0] is not None and "jump" in estimate.reasons[0]


def test_domain_edge_steps_are_dropped() -> None:
    """log at 1e-5: the first steps leave the domain; shorter steps still converge."""
    x = torch.tensor([1e-5], dtype=torch.float64)
    estimate = FiniteDifference().estimate(
        elementwise_problem(torch.log, x, torch.ones(1, dtype=torch.float64)), Probes(1)
    )
    assert estimate.reasons[0] is None
    assert math.isclose(estimate.values[0], 1e5, rel_tol=1e-9)


def test_nan_everywhere_is_inconclusive() -> None:
    x = torch.tensor([-1.0], dtype=torch.float64)
    estimate = FiniteDifference().estimate(
        elementwise_problem(torch.sqrt, x, torch.ones(1, dtype=torch.float64)), Probes(1)
    )
    assert estimate.reasons[0] is not None and "not finite" in estimate.reasons[0]


def test_symbolic_kink_interval_couples_opposite_arguments() -> None:
    """Max(x, 2x) at 0 has subgradients [1, 2], not the [0, 3] that independent sides would give."""
    x = torch.zeros(1, dtype=torch.float64)
    problem = elementwise_problem(
        lambda t: torch.maximum(t, 2 * t), x, torch.ones(1, dtype=torch.float64)
    )
    estimate = Symbolic("Max(x, 2*x)").estimate(problem, Probes(1))
    assert (estimate.lower[0], estimate.upper[0]) == (1.0, 2.0)


def test_symbolic_non_finite_derivative_is_inconclusive() -> None:
    x = torch.zeros(1, dtype=torch.float64)
    problem = elementwise_problem(torch.sqrt, x, torch.ones(1, dtype=torch.float64))
    estimate = Symbolic("sqrt(x)").estimate(problem, Probes(1))
    assert estimate.reasons[0] is not None and "not a finite real" in estimate.reasons[0]


def test_symbolic_uses_at_least_30_digits() -> None:
    """exp(x) - 1 near 1e-12 cancels catastrophically in float64 but not at 30 digits."""
    x = torch.tensor([1e-12], dtype=torch.float64)
    problem = elementwise_problem(torch.expm1, x, torch.ones(1, dtype=torch.float64))
    estimate = Symbolic("(exp(x) - 1)/x * x").estimate(problem, Probes(1))
    assert estimate.values[0] == pytest.approx(math.exp(1e-12), rel=1e-15)


def test_cancellation_inside_fn_does_not_fool_the_rounding_estimate() -> None:
    """-sqrt(x**2+1) + cos(x) is ~-x**2 but built from terms ~1: its real rounding (~1e-16 per
    evaluation) is far above 2*eps*|f| (~1e-30). Found by properties/test_prop_vector_backward.py;
    the measured noise covers it."""

    def cancels(x: torch.Tensor) -> torch.Tensor:
        return -torch.sqrt(x**2 + 1.0) + torch.cos(x)

    x = torch.tensor([1.1920929e-07, 0.0], dtype=torch.float64)
    ones = torch.ones(2, dtype=torch.float64)
    result = gradcheck.check_function(cancels, x, cotangents=ones)
    assert result.passed, result.message
