"""The finite-difference core that FiniteDifference and directional_derivative share, directly."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random

import pytest
import torch

from gradcheck.errors import InvalidArgument
from gradcheck.oracles.base import EPS64
from gradcheck.oracles.kinks import (
    DIRECTIONAL_GAP_RULE,
    FD_GAP_RULE,
    JUMP,
    KINK,
    SMOOTH,
    classify,
    directional_gap_rule,
    kink_persistence,
    one_sided_limits,
    settled,
)
from gradcheck.oracles.noise import (
    NOISE_MULTIPLES,
    NOISE_STEPS,
    NOISE_UNITS_PER_STEP,
    both_sides,
    evaluation_rounding,
    exact_in_float32,
    level_noise,
    measured_noise,
    measured_rounding_magnitude,
    measurement_unit,
    rounding_magnitude,
    stair_noise,
)
from gradcheck.oracles.richardson import (
    Entry,
    agrees_with_finest,
    amplification,
    best_of_table,
    extrapolate,
    two_level_candidates,
)
from gradcheck.oracles.steps import (
    Quotients,
    geometric_step,
    geometric_steps,
    halving_step,
    scalar_quotients,
    signed_pairs,
)
from gradcheck.tolerances import DIRECTIONAL_CLEAN_MARGIN


def _levels(f, steps, per_evaluation=2.0):
    """Quotients of the scalar function ``f`` around 0 at each step."""
    center = f(0.0)
    out = []
    for h in steps:
        plus, minus = f(h), f(-h)
        magnitude = abs(plus) + abs(center) + abs(minus)
        rounding = evaluation_rounding(magnitude, h, per_evaluation)
        out.append(scalar_quotients(h, plus, center, minus, rounding))
    return out


def _halving(first=1e-3, count=8):
    return [halving_step(first, j) for j in range(count)]


def test_step_sequences():
    assert _halving(1.0, 4) == [1.0, 0.5, 0.25, 0.125]
    assert geometric_steps(1e-6, 10.0, 3) == [1e-6, 1e-7, 1e-6 / 100.0]
    assert geometric_step(1e-6, 10.0, 0) == 1e-6
    assert signed_pairs([2.0, 1.0]) == [2.0, -2.0, 1.0, -1.0]


def test_quotients_of_a_quadratic_are_exact():
    # phi(t) = 1 + 3t + 2t^2 at h = 0.5: D = 3 exactly, F = 3 + 2h, B = 3 - 2h, gap 4h.
    level = _levels(lambda t: 1.0 + 3.0 * t + 2.0 * t * t, [0.5])[0]
    assert (level.central, level.forward, level.backward) == (3.0, 4.0, 2.0)
    assert level.gap == 2.0 and level.signed_gap == 2.0
    assert level.moved


def test_extrapolation_removes_the_h2_term_exactly():
    # D(h) = c + a h^2 with binary-exact steps: one extrapolation leaves c exactly.
    c, a = 1.5, 3.0
    coarse, fine = c + a * 0.5**2, c + a * 0.25**2
    assert extrapolate(coarse, fine, 2.0, 2) == c
    # Order 1 removes an h term; ratio 10 removes h^2 up to rounding.
    assert extrapolate(c + a * 0.5, c + a * 0.25, 2.0, 1) == c
    assert extrapolate(c + a * 1e-2, c + a * 1e-4, 10.0, 2) == pytest.approx(c, abs=1e-15)
    # Without the right order the term is not removed.
    assert abs(extrapolate(coarse, fine, 2.0, 4) - c) > 0.1


def test_table_removes_h2_and_h4_terms():
    levels = [
        Quotients(step=h, central=2.0 + 5.0 * h**2 - 7.0 * h**4, forward=0, backward=0, rounding=0)
        for h in (0.5, 0.25, 0.125)
    ]
    # Two levels remove h^2 only (28 h^4 is left at h = 0.25); three remove h^4 as well.
    two = best_of_table(levels[:2])
    assert two.value == 2.0 + 28.0 * 0.25**4
    assert abs(two.value - 2.0) <= two.error
    three = best_of_table(levels)
    assert three.value == 2.0
    assert 0.0 < three.error < math.inf


def test_rounding_amplification_of_the_table():
    assert amplification(2.0, []) == 1.0
    assert amplification(2.0, [2]) == pytest.approx(1.0 + 2.0 / 3.0)
    assert amplification(2.0, [2, 4]) == pytest.approx((1.0 + 2.0 / 3.0) * (1.0 + 2.0 / 15.0))


@pytest.mark.parametrize(
    ("f", "derivative"),
    [
        (lambda t: math.exp(0.7 + t), math.exp(0.7)),
        (lambda t: math.sin(1.3 + 4.0 * t), 4.0 * math.cos(1.3)),
        (lambda t: math.exp(12.0 + 2.0 * t), 2.0 * math.exp(12.0)),
    ],
)
def test_table_error_estimate_bounds_the_true_error(f, derivative):
    for count in (3, 5, 8):
        best = best_of_table(_levels(f, _halving(1e-3, count)))
        assert abs(best.value - derivative) <= best.error
    # ...and is informative, not vacuous.
    assert best.error < 1e-9 * abs(derivative)


def test_two_level_candidates_per_rule():
    # phi(t) = 1 + 2t + 3t^2: central is exact, one-sided ones are exact after one extrapolation.
    f = lambda t: 1.0 + 2.0 * t + 3.0 * t * t  # noqa: E731
    coarse, fine = _levels(f, [1e-2, 1e-3], per_evaluation=1.0)
    candidates = two_level_candidates(coarse, fine, 10.0)
    assert [c.rule for c in candidates] == ["central", "forward", "backward"]
    for candidate in candidates:
        assert candidate.value == pytest.approx(2.0, abs=1e-11)
        assert candidate.step == 1e-3
    assert candidates[0].error == pytest.approx(abs(fine.central - coarse.central) + fine.rounding)
    assert candidates[1].error == pytest.approx(
        abs(fine.forward - coarse.forward) + 2.0 * fine.rounding
    )


def test_level_noise_is_rounding_plus_relative_floor():
    level = Quotients(step=1e-3, central=1.0, forward=3.0, backward=-5.0, rounding=1e-10)
    assert level_noise(level, 4.0, 1e-9) == pytest.approx(4e-10 + 5e-9)
    assert FD_GAP_RULE.noise(level) == pytest.approx(4e-10 + 5e-9)
    assert DIRECTIONAL_GAP_RULE.noise(level) == pytest.approx(4e-10 + 5e-12)
    assert evaluation_rounding(3.0, 1e-3, 2.0) == pytest.approx(2.0 * EPS64 * 3.0 / 1e-3)


def _step(t):
    """A unit jump at 0 (Heaviside, 0 at 0) plus a slope: the one-sided gap grows like 1/h."""
    return (1.0 if t > 0 else 0.0) + t


@pytest.mark.parametrize(
    ("rule", "steps"),
    [(FD_GAP_RULE, _halving()), (DIRECTIONAL_GAP_RULE, geometric_steps(1e-3, 10.0, 4))],
    ids=["fd-halving", "directional-decades"],
)
def test_classifier_on_abs_relu_sign_and_sin(rule, steps):
    assert classify(_levels(abs, steps), rule) == KINK
    assert classify(_levels(lambda t: max(0.0, t), steps), rule) == KINK
    assert classify(_levels(lambda t: math.sin(1.0 + t), steps), rule) == SMOOTH
    assert classify(_levels(lambda t: math.exp(3.0 * t), steps), rule) == SMOOTH
    # FiniteDifference tells a jump from a kink; directional_derivative has no jump class.
    assert classify(_levels(_step, steps), rule) == (JUMP if rule is FD_GAP_RULE else KINK)


def test_a_symmetric_jump_is_caught_by_the_growing_central_quotient():
    # sign(t) + t: F = B = 1/h + 1, so the gap is 0; only the central quotient shows the jump.
    levels = _levels(lambda t: math.copysign(1.0, t) + t if t else t, _halving())
    assert levels[-1].gap == 0.0
    assert classify(levels, FD_GAP_RULE) == JUMP
    assert classify(levels, DIRECTIONAL_GAP_RULE) == SMOOTH


def test_kink_persistence_follows_the_step_ratio():
    # A smooth gap halves with a halving step: a fixed 0.5 share (directional's rule before the
    # engines shared one) called it a kink; the share derived from the ratio does not.
    assert kink_persistence(2.0) == 0.75 and kink_persistence(10.0) == 0.55
    smooth = _levels(lambda t: math.sin(1.0 + t), _halving())
    assert classify(smooth, FD_GAP_RULE) == SMOOTH
    assert classify(smooth, directional_gap_rule(2.0)) == SMOOTH
    assert classify(smooth, dataclasses.replace(DIRECTIONAL_GAP_RULE, kink_persistence=0.5)) == KINK
    kinked = _levels(lambda t: abs(t) + t, _halving())
    assert classify(kinked, FD_GAP_RULE) == KINK
    assert classify(kinked, directional_gap_rule(2.0)) == KINK


def test_a_distant_kink_is_settled_once_the_step_is_below_it():
    f = lambda t: 1.0 + 2.0 * t + 5.0 * max(0.0, t - 3e-7)  # noqa: E731
    levels = _levels(f, geometric_steps(1e-5, 10.0, 4), per_evaluation=1.0)
    flags = [
        settled(fine, coarse, 10.0, DIRECTIONAL_GAP_RULE, DIRECTIONAL_CLEAN_MARGIN)
        for coarse, fine in itertools.pairwise(levels)
    ]
    # 1e-5 -> 1e-6: both straddle the switch point; 1e-6 -> 1e-7: the gap vanished; then clean.
    assert flags == [False, True, True]
    smooth = _levels(lambda t: math.sin(1.0 + t), geometric_steps(1e-3, 10.0, 2), 1.0)
    assert settled(smooth[1], smooth[0], 10.0, DIRECTIONAL_GAP_RULE, DIRECTIONAL_CLEAN_MARGIN)


def test_one_sided_limits_at_a_relu_kink():
    levels = _levels(lambda t: max(0.0, t) + t * t, _halving(1e-3, 2))
    left, right, spread = one_sided_limits(levels[-1], levels[-2])
    assert left == pytest.approx(0.0, abs=1e-12)
    assert right == pytest.approx(1.0, abs=1e-12)
    assert spread == pytest.approx(5e-4, rel=1e-6)


@pytest.mark.parametrize("sigma", [1e-13, 1e-10, 1e-7])
def test_measured_noise_matches_injected_noise(sigma):
    rng = random.Random(1234)
    slope = math.cos(0.3)

    def noisy(t):
        return math.sin(0.3 + t) + sigma * rng.gauss(0.0, 1.0)

    center = noisy(0.0)
    values = [noisy(t) for t in NOISE_STEPS]
    magnitude = measured_rounding_magnitude(center, values, slope, 0.0)
    # eps * m = 2 * max |n_i - n_0| for 6 draws of N(0, sigma^2): about 2-10 sigma.
    assert sigma <= EPS64 * magnitude <= 12.0 * sigma
    # A larger known magnitude wins.
    assert measured_rounding_magnitude(center, values, slope, 1e3 * sigma / EPS64) == (
        1e3 * sigma / EPS64
    )


def test_measured_noise_of_an_exact_line_is_the_given_magnitude():
    values = [2.0 + 0.5 * t for t in NOISE_STEPS]
    assert measured_rounding_magnitude(2.0, values, 0.5, 3.0) == 3.0
    with pytest.raises(InvalidArgument, match="one value per step"):
        measured_rounding_magnitude(2.0, values[:2], 0.5, 3.0)


# -- issue 16: the finest steps' word, the measured noise and its stairs --------------------------


def test_an_entry_that_the_finest_steps_contradict_does_not_agree():
    # A staircase: the two coarse levels agree on 0.83, every finer level gives exactly 0.
    coarse = [scalar_quotients(h, 0.83 * h, 0.0, -0.83 * h, 1e-12) for h in (4e-4, 2e-4)]
    fine = [scalar_quotients(h, 0.0, 0.0, 0.0, 1e-12) for h in (1e-4, 5e-5)]
    assert not agrees_with_finest(coarse + fine, Entry(0.83, 9e-12), 4.0, 2.0)
    assert agrees_with_finest(coarse + fine, Entry(0.0, 9e-12), 4.0, 2.0)


def test_a_smooth_sequence_agrees_with_its_extrapolation():
    levels = _levels(math.sin, _halving(1e-3, 6))
    best = best_of_table(levels)
    assert agrees_with_finest(levels, best, 4.0, 2.0)
    # A third of the last change is where the finest quotient sits: factor 0 fails, 1 holds.
    wrong = Entry(best.value + 10 * abs(levels[-1].central - levels[-2].central), 0.0)
    assert not agrees_with_finest(levels, wrong, 0.0, 2.0)


def _sides(f, unit):
    return [torch.tensor([f(m * unit)], dtype=torch.float64) for m in NOISE_MULTIPLES]


def test_measured_noise_is_exactly_zero_on_a_cubic_and_reads_injected_noise():
    unit = 1e-6 / NOISE_UNITS_PER_STEP
    zero = torch.tensor([0.0], dtype=torch.float64)
    cubic = measured_noise(zero, _sides(lambda t: 3 * t - 5 * t**2 + 7e6 * t**3, unit))
    assert float(cubic) < 1e-20  # the values' own rounding (about 1e-21), no curvature
    center = torch.tensor([2.0], dtype=torch.float64)
    rng = random.Random(5)
    sigmas = []
    for _ in range(200):
        noisy = _sides(lambda t: 2.0 + 3 * t + 1e-9 * rng.gauss(0.0, 1.0), unit)
        sigmas.append(float(measured_noise(center, noisy)))
    # One sample of |N(0, sigma^2)| per measurement: its mean is sqrt(2/pi) sigma.
    assert 0.6e-9 < sum(sigmas) / len(sigmas) < 1.0e-9
    with pytest.raises(InvalidArgument, match="one per multiple"):
        measured_noise(center, noisy[:2])


def test_measured_noise_leaves_out_non_finite_values():
    center = torch.tensor([0.0, 1.0], dtype=torch.float64)
    values = [torch.tensor([math.nan, 1.0], dtype=torch.float64)] * len(NOISE_MULTIPLES)
    assert measured_noise(center, values).tolist() == [0.0, 0.0]


def test_measurement_points_are_exact_on_both_sides_even_at_a_power_of_two():
    point = torch.tensor([1.0, -0.5, 0.3, 1e6, math.inf], dtype=torch.float64)
    first = torch.tensor([1e-3, 5e-4, 3e-4, 1e-3, 1e-3], dtype=torch.float64)
    for sign in (1.0, -1.0):
        unit = measurement_unit(point, torch.full_like(point, sign), first)
        assert unit[-1] == 0.0  # a NaN/Inf element stays put
        for m in NOISE_MULTIPLES:
            for side in (1.0, -1.0):
                moved = (point + side * m * unit)[:-1]
                assert torch.equal(moved - point[:-1], side * m * unit[:-1])


def test_both_sides_takes_the_larger_unless_one_side_is_spoiled():
    plus = torch.tensor([1e-16, 1e-16, 1e-4, 1e-12], dtype=torch.float64)
    minus = torch.tensor([3e-16, 0.0, 1e-16, 0.0], dtype=torch.float64)
    size = torch.tensor([1e-8, 1e-8, 1e-8, 1e-3], dtype=torch.float64)
    # agree: larger; one side zero but rounding-sized: larger; a stair on one side: smaller.
    assert both_sides(plus, minus, 100.0, size).tolist() == [3e-16, 1e-16, 1e-16, 1e-12]


def test_stair_noise_tells_rounding_stairs_from_a_flat_side_and_a_staircase():
    def level(h, up, down):
        return scalar_quotients(h, up, 0.0, -down, 0.0)

    # float32-like: the forward side moves by one unit (6e-8) at coarse steps, not at fine ones.
    rounding = [level(4e-4, 6e-8, 6e-8), level(2e-4, 6e-8, 0.0), level(1e-4, 0.0, 0.0)]
    assert stair_noise(rounding, 1.0, 2.0**-20) == pytest.approx(3e-8)
    # relu's flat side is 0 at every step: no stairs.
    flat = [level(h, h, 0.0) for h in (4e-4, 2e-4, 1e-4)]
    assert stair_noise(flat, 1.0, 2.0**-20) == 0.0
    # round(x, 3): stairs of 1e-3, the function's own.
    staircase = [level(4e-4, 1e-3, 0.0), level(2e-4, 0.0, 0.0), level(1e-4, 0.0, 0.0)]
    assert stair_noise(staircase, 0.4, 2.0**-20) == 0.0


def test_rounding_magnitude_takes_the_larger_of_assumed_and_measured():
    assert rounding_magnitude(5.0, 0.0, 2.0, 4.0) == 5.0
    # 3 evaluations * safety 4 * 1e-16 / (2 * eps)
    assert rounding_magnitude(0.0, 1e-16, 2.0, 4.0) == pytest.approx(6e-16 / EPS64)


def test_exact_in_float32():
    values = torch.tensor(
        [1.0, 0.1, float(torch.tensor(0.1).float()), math.inf], dtype=torch.float64
    )
    assert exact_in_float32(values).tolist() == [True, False, True, False]
