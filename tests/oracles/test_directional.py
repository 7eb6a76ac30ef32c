"""The kink-aware directional estimator on scalar functions with known derivatives and kinks."""

from __future__ import annotations

import math

import pytest

from gradcheck.errors import InvalidArgument
from gradcheck.oracles.directional import directional_derivative, initial_steps


def _estimate(f, **kwargs):
    calls: list[list[float]] = []

    def phi(steps):
        calls.append(list(steps))
        return [f(t) for t in steps]

    estimate = directional_derivative(phi, center=f(0.0), magnitude=abs(f(0.0)) + 1.0, **kwargs)
    return estimate, calls


def _kinked(distance: float, left: float = 2.0, jump: float = 5.0):
    """Slope ``left`` below ``distance`` and ``left + jump`` above it (a ReLU switch point)."""
    return lambda t: 1.0 + left * t + jump * max(0.0, t - distance)


@pytest.mark.parametrize(
    ("f", "derivative"),
    [
        (lambda t: math.sin(1.0 + t), math.cos(1.0)),
        (lambda t: 100.0 * math.exp(0.5 + 3.0 * t), 300.0 * math.exp(0.5)),
        (lambda t: 3.0 * t - 7.0, 3.0),
    ],
)
def test_smooth_functions_are_accurate_and_first_batch_is_the_initial_steps(f, derivative):
    estimate, calls = _estimate(f)
    assert estimate.decided
    assert calls[0] == initial_steps()
    assert abs(estimate.value - derivative) <= 4 * estimate.error
    assert estimate.error < 1e-6 * max(1.0, abs(derivative))


@pytest.mark.parametrize("distance", [3e-7, -3e-7, 5e-8, -5e-8, 4e-6])
def test_a_switch_point_near_the_point_is_stepped_around(distance):
    # Autograd's value is the slope of the piece containing 0: 2 when the switch point is to the
    # right, 7 when it is to the left. A two-point quotient at h=1e-6 would be off by up to 50%.
    estimate, _ = _estimate(_kinked(distance))
    expected = 2.0 if distance > 0 else 7.0
    assert estimate.decided, estimate.reason
    assert abs(estimate.value - expected) < 1e-6
    assert not estimate.kink


@pytest.mark.parametrize("distance", [3e-11, -3e-11, 0.0])
def test_a_switch_point_at_the_point_is_reported_as_a_kink_not_an_estimate(distance):
    estimate, calls = _estimate(_kinked(distance))
    assert not estimate.decided
    assert estimate.kink
    # The one-sided quotients at the smallest step (1e-9) bracket both pieces' slopes, up to
    # the share of the step that lies beyond the switch point.
    assert 2.0 - 1e-6 <= estimate.lower <= 2.0 + 5.0 * abs(distance) / 1e-9 + 1e-6
    assert 7.0 - 5.0 * abs(distance) / 1e-9 - 1e-6 <= estimate.upper <= 7.0 + 1e-6
    assert "switch point" in estimate.reason
    assert sum(len(c) for c in calls) == estimate.evaluations == 8


def test_non_finite_values_are_undecided_with_the_reason():
    estimate, _ = _estimate(lambda t: math.log(t) if t > 0 else math.nan)
    assert not estimate.decided and not estimate.kink
    assert "NaN/Inf" in estimate.reason


def test_a_converged_estimate_stops_after_two_levels():
    _, calls = _estimate(lambda t: 2.0 * t)
    assert len(calls) == 1 and len(calls[0]) == 4


@pytest.mark.parametrize(
    "kwargs", [{"first_step": 0.0}, {"first_step": 2.0}, {"ratio": 1.0}, {"max_levels": 1}]
)
def test_bad_settings_are_rejected_with_a_suggestion(kwargs):
    with pytest.raises(InvalidArgument, match="Try first_step=1e-6"):
        _estimate(lambda t: t, **kwargs)
