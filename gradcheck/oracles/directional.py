"""Kink-aware directional derivatives of a scalar function of one step size, ``phi(t)``.

A whole model has millions of parameters, so it is differentiated along a few random directions
``u``: ``phi(t) = L(theta + t*u)`` and ``phi'(0) = grad L . u``. ReLU networks are piecewise
smooth, and a ResNet18 has about a million ReLU, max-pool and hardswish switch points; a step of
1e-6 (relative) already crosses one on a good fraction of directions, which shifts a two-point
quotient by up to a few percent while autograd is right. This estimator tells the two apart.

1. Steps ``h_j = first_step / ratio**j``. Each level evaluates ``phi(+h)`` and ``phi(-h)`` and
   forms three quotients: central ``D = (phi(h) - phi(-h)) / 2h`` and one-sided
   ``F = (phi(h) - phi(0)) / h`` and ``B = (phi(0) - phi(-h)) / h``
   (:class:`gradcheck.oracles.steps.Quotients`).
2. A switch point at distance ``d`` from 0 spoils the quotients whose interval contains it, and
   only while ``h > d``; the quotient on the other side is untouched. So a level is *clean* when
   its one-sided gap ``|F - B|`` is within rounding or shrinks with ``h`` (curvature makes it
   proportional to ``h`` on smooth pieces; a switch point inside the interval keeps it put;
   :func:`gradcheck.oracles.kinks.settled`).
3. Each rule (central, forward, backward) is Richardson-extrapolated over consecutive levels
   (``D = phi' + c h^2``, ``F = phi' + c h``); its error estimate is the distance between the two
   levels plus the rounding error ``eps*magnitude/h``. The best estimate over clean levels wins; it
   is accepted as soon as its two levels agree to within rounding
   (:func:`gradcheck.oracles.richardson.two_level_candidates`).
4. A gap that persists down to the smallest step marks a switch point within that step of the
   point: the estimate is undecided with ``kink=True`` and the one-sided derivatives as the
   interval (``lower``, ``upper``) autograd's value must lie in. The caller then draws another
   direction; such a direction is never counted as a failure by itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gradcheck.errors import InvalidArgument
from gradcheck.oracles.kinks import KINK, classify, directional_gap_rule, settled
from gradcheck.oracles.noise import evaluation_rounding
from gradcheck.oracles.richardson import Candidate, converged, two_level_candidates
from gradcheck.oracles.steps import (
    Quotients,
    geometric_step,
    geometric_steps,
    scalar_quotients,
    signed_pairs,
)
from gradcheck.tolerances import (
    DIRECTIONAL_ACCEPT_RELATIVE,
    DIRECTIONAL_ACCEPT_ROUNDING_FACTOR,
    DIRECTIONAL_CLEAN_MARGIN,
    DIRECTIONAL_ROUNDING_PER_EVALUATION,
)


@dataclass(frozen=True)
class DirectionalEstimate:
    """The derivative of ``phi`` at 0, or why it could not be decided.

    ``rule`` is ``"central"``, ``"forward"`` or ``"backward"`` (the quotient the value came
    from) and ``step`` the smaller of the two steps it was extrapolated from. ``kink`` is True
    when a switch point sits within the smallest step of 0; ``lower``/``upper`` then hold the
    one-sided derivatives. ``reason`` is None exactly when the estimate is decided.
    """

    value: float
    error: float
    rule: str
    step: float
    evaluations: int
    kink: bool = False
    lower: float | None = None
    upper: float | None = None
    reason: str | None = None

    @property
    def decided(self) -> bool:
        """True when ``value`` and ``error`` hold an estimate."""
        return self.reason is None


def initial_steps(first_step: float = 1e-6, ratio: float = 10.0) -> list[float]:
    """The steps every estimate evaluates first (two levels, both signs), so a caller can
    evaluate them for many directions in one batch before calling
    :func:`directional_derivative`."""
    return signed_pairs(geometric_steps(first_step, ratio, 2))


def directional_derivative(
    phi: Callable[[Sequence[float]], Sequence[float]],
    *,
    center: float,
    magnitude: float,
    first_step: float = 1e-6,
    ratio: float = 10.0,
    max_levels: int = 4,
) -> DirectionalEstimate:
    """Estimate ``phi'(0)`` from ``phi(+-h)`` at shrinking steps, with kink detection.

    ``phi(steps)`` returns ``phi(t)`` for each step in a list (so a caller can batch them; the
    first call asks for :func:`initial_steps`, later calls for one level ``[h, -h]``).
    ``center`` is ``phi(0)``, ``magnitude`` the size the rounding error of ``phi`` scales with
    (``sum |dL/dout * out|`` for a model), so one evaluation is off by about
    ``eps * magnitude``. At most ``2 * max_levels`` evaluations.
    """
    if not (0 < first_step < 1 and ratio > 1 and max_levels >= 2):
        raise InvalidArgument(
            f"Got first_step={first_step!r}, ratio={ratio!r}, max_levels={max_levels!r}, but "
            "they must satisfy 0 < first_step < 1, ratio > 1 and max_levels >= 2. "
            "Try first_step=1e-6, ratio=10.0, max_levels=4."
        )
    levels: list[Quotients] = []
    best: Candidate | None = None
    pending = list(phi(initial_steps(first_step, ratio)))
    evaluations = len(pending)
    for j in range(max_levels):
        step = geometric_step(first_step, ratio, j)
        if not pending:
            pending = list(phi(signed_pairs([step])))
            evaluations += len(pending)
        plus, minus = pending.pop(0), pending.pop(0)
        if not (math.isfinite(plus) and math.isfinite(minus)):
            return _undecided(
                evaluations,
                f"the loss is NaN/Inf at a step of {step:.1g} along the direction",
            )
        rounding = evaluation_rounding(magnitude, step, DIRECTIONAL_ROUNDING_PER_EVALUATION)
        level = scalar_quotients(step, plus, center, minus, rounding)
        levels.append(level)
        if len(levels) < 2 or not _clean(levels[-1], levels[-2], ratio):
            continue
        for candidate in two_level_candidates(levels[-2], level, ratio):
            if best is None or candidate.error < best.error:
                best = candidate
        if best is not None and _accepted(best, level):
            break
    if best is not None:
        return DirectionalEstimate(
            value=best.value,
            error=best.error,
            rule=best.rule,
            step=best.step,
            evaluations=evaluations,
        )
    last = levels[-1]
    if classify(levels, directional_gap_rule(ratio)) == KINK:
        return _kink(last, evaluations)
    return _undecided(
        evaluations,
        f"the quotients did not settle between steps {levels[0].step:.1g} and "
        f"{last.step:.1g} (last central {last.central:.9g}, rounding {last.rounding:.2g})",
    )


def _kink(last: Quotients, evaluations: int) -> DirectionalEstimate:
    """A switch point within the smallest step: the one-sided quotients as the interval."""
    return DirectionalEstimate(
        value=math.nan,
        error=math.inf,
        rule="",
        step=last.step,
        evaluations=evaluations,
        kink=True,
        lower=min(last.forward, last.backward),
        upper=max(last.forward, last.backward),
        reason=f"one-sided quotients {last.backward:.9g} (left) and {last.forward:.9g} "
        f"(right) still differ at a step of {last.step:.1g}: a switch point (ReLU, "
        "max-pool) lies within that step of the point",
    )


def _undecided(evaluations: int, reason: str) -> DirectionalEstimate:
    return DirectionalEstimate(
        value=math.nan,
        error=math.inf,
        rule="",
        step=math.nan,
        evaluations=evaluations,
        reason=reason,
    )


def _clean(level: Quotients, previous: Quotients, ratio: float) -> bool:
    """No switch point within ``level.step`` of 0.

    Curvature makes the one-sided gap ``F - B = h*phi''`` shrink in proportion to the step,
    keeping its sign (accepted within a factor of 2). A switch point that the smaller step no
    longer reaches makes the gap vanish to rounding; that counts only when the larger step's
    gap stood well above the smaller step's rounding (8x), because several switch points at
    the point itself (ReLUs fed exact zeros) keep a gap that rounding at a tiny step can hide.
    """
    return settled(level, previous, ratio, directional_gap_rule(ratio), DIRECTIONAL_CLEAN_MARGIN)


def _accepted(best: Candidate, level: Quotients) -> bool:
    """The best candidate's two levels agree to within rounding."""
    return converged(
        best.value,
        best.error,
        level.rounding,
        DIRECTIONAL_ACCEPT_ROUNDING_FACTOR,
        DIRECTIONAL_ACCEPT_RELATIVE,
    )
