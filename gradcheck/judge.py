"""The one judge: a measured value against an oracle's value and its error estimate.

An element passes when ``|measured - oracle| <= atol + rtol*|oracle| + error_factor*(error +
noise)``, where ``error`` is the oracle's error estimate and ``noise`` the rounding of the
measured side. On a kink the oracle gives an interval of valid subgradients (the one-sided
derivatives) and the element is judged by its distance from the interval. An element the oracle
could not decide is inconclusive, with the oracle's reason, and never a failure. Every check
(check_function, check_values, check_module's rows, the optimizer steps through check_values)
decides its verdicts here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gradcheck.oracles.base import Estimate
from gradcheck.status import FAILED, INCONCLUSIVE, KINK, PASSED
from gradcheck.tolerances import EXCESS_FLOOR, UNINFORMATIVE_ERROR_SHARE, Tolerance

OUTSIDE_SEVERAL_SWITCH_POINTS = (
    "the measured value lies outside the one-sided derivatives, and with several switch points "
    "at the point it can be any mix of them"
)


@dataclass(frozen=True)
class Verdict:
    """One element's outcome: ``status`` (passed, failed, kink or inconclusive), the error that
    was judged, its relative size, what was allowed, and ``reason`` when inconclusive."""

    status: str
    abs_error: float
    rel_error: float
    allowed: float
    reason: str | None = None

    @property
    def decided(self) -> bool:
        """True unless the oracle could not decide the element."""
        return self.status != INCONCLUSIVE

    @property
    def excess(self) -> float:
        """How far past its tolerance the element is, as a ratio (> 1 fails; -inf when
        undecided)."""
        if not self.decided:
            return -math.inf
        return self.abs_error / max(self.allowed, EXCESS_FLOOR)


def _undecided(reason: str) -> Verdict:
    return Verdict(INCONCLUSIVE, math.nan, math.nan, math.nan, reason)


def judge_element(
    measured: float,
    tolerance: Tolerance,
    *,
    oracle: float = math.nan,
    error: float = 0.0,
    noise: float = 0.0,
    lower: float | None = None,
    upper: float | None = None,
    reason: str | None = None,
    outside_interval_fails: bool = True,
    scale: float | None = None,
) -> Verdict:
    """The verdict of one element.

    ``oracle`` and ``error`` are the oracle's value and error estimate, ``noise`` the measured
    side's rounding. With ``lower`` and ``upper`` (a kink) the element is judged against that
    interval; ``outside_interval_fails=False`` makes a value outside it inconclusive instead of
    failed (several switch points at once, where autograd may mix the one-sided derivatives).
    ``reason`` marks an element the oracle could not decide. An oracle value, error estimate or
    tolerance that is not finite decides nothing (an overflowing derivative would make the
    tolerance infinite and accept anything), and neither does an interval ``oracle +/-
    error_factor * error`` that reaches 0 (it does not fix the sign) unless it is small against
    ``scale``, the size of the whole gradient.
    """
    if reason is not None:
        return _undecided(reason)
    doubt = _uninformative(oracle, tolerance.error_factor * error, lower, upper, scale)
    if doubt is not None:
        return _undecided(doubt)
    slack = error + noise
    if lower is not None and upper is not None:
        reference = lower if measured < lower else upper if measured > upper else measured
        allowed = tolerance.allowed(max(abs(lower), abs(upper)), slack)
        status = KINK
    else:
        reference = oracle
        allowed = tolerance.allowed(reference, slack)
        status = PASSED
    # A non-finite measured value, or rounding of it, is the side under test: it fails.
    finite = math.isfinite(measured) and math.isfinite(noise)
    difference = abs(measured - reference) if finite else math.inf
    if not finite:
        return Verdict(FAILED, math.inf, math.inf, allowed)
    if not math.isfinite(allowed):
        return _undecided(f"the tolerance is not finite ({allowed:.3g}): it decides nothing")
    if not difference <= allowed:
        if status == KINK and not outside_interval_fails:
            return _undecided(OUTSIDE_SEVERAL_SWITCH_POINTS)
        status = FAILED
    scale = max(abs(reference), abs(measured))
    if difference == 0:
        relative = 0.0
    else:
        relative = difference / scale if scale > 0 and math.isfinite(difference) else math.inf
    return Verdict(status, difference, relative, allowed)


def _uninformative(
    oracle: float,
    error: float,
    lower: float | None,
    upper: float | None,
    scale: float | None,
) -> str | None:
    """Why an oracle's answer decides nothing, or None when it can decide. ``error`` is the
    half-width the judge allows for it (``error_factor`` times the estimate)."""
    if lower is not None and upper is not None:
        if not (math.isfinite(lower) and math.isfinite(upper) and math.isfinite(error)):
            return (
                f"the oracle's one-sided derivatives [{lower:.6g}, {upper:.6g}] (+/- {error:.3g}) "
                "are not finite: they decide nothing"
            )
        return None
    if not math.isfinite(oracle):
        return f"the oracle's value is not finite ({oracle:.6g}, an overflow?): it decides nothing"
    if not math.isfinite(error):
        return f"the oracle's error estimate is not finite ({error:.3g}): it decides nothing"
    size = max(scale or 0.0, 1.0)  # the tolerance table's atol assumes a unit scale too
    if scale is not None and error >= abs(oracle) and error > UNINFORMATIVE_ERROR_SHARE * size:
        return (
            f"the oracle's interval {oracle:.6g} +/- {error:.3g} does not fix the derivative's "
            f"sign, and its half-width exceeds "
            f"{UNINFORMATIVE_ERROR_SHARE:g} of the gradient's size {size:.3g}: it decides nothing"
        )
    return None


def judge(
    measured: Sequence[float],
    noise: Sequence[float],
    estimate: Estimate,
    tolerance: Tolerance,
    *,
    estimated: bool = True,
) -> list[Verdict]:
    """The verdict of every element (probe) of an oracle's :class:`Estimate`; the gradient's
    size (for :func:`judge_element`'s ``scale``) is the oracle's largest finite |value| (never
    the measured side's, which is what is under test). ``estimated=False`` says the errors are
    bounds (a printed number's half unit, a formula's rounding), not estimates, so an error
    larger than the value still decides."""
    sizes = [abs(v) for v in estimate.values if math.isfinite(v)]
    scale = max(sizes, default=0.0) if estimated else None
    return [
        judge_element(
            value,
            tolerance,
            oracle=estimate.values[p],
            error=estimate.errors[p],
            noise=noise[p],
            lower=estimate.lower[p],
            upper=estimate.upper[p],
            reason=estimate.reasons[p],
            scale=scale,
        )
        for p, value in enumerate(measured)
    ]


def worst_index(verdicts: Sequence[Verdict]) -> int | None:
    """The element furthest past (or closest to) its tolerance; None if none was decided."""
    decided = [p for p, v in enumerate(verdicts) if v.decided]
    if not decided:
        return None
    return max(decided, key=lambda p: verdicts[p].excess)


@dataclass(frozen=True)
class Summary:
    """What a list of verdicts adds up to: which elements were decided and failed, the worst one,
    the largest errors and the overall status (``"passed"``, ``"failed"``, ``"inconclusive"``)."""

    decided: list[int]
    failures: list[int]
    worst: int | None
    max_abs_error: float
    max_rel_error: float

    @property
    def status(self) -> str:
        """Failed if any element failed, passed if any was decided, else inconclusive."""
        return FAILED if self.failures else PASSED if self.decided else INCONCLUSIVE


def summarize(verdicts: Sequence[Verdict]) -> Summary:
    """The :class:`Summary` of ``verdicts``."""
    decided = [p for p, v in enumerate(verdicts) if v.decided]
    judged = [verdicts[p] for p in decided]
    return Summary(
        decided=decided,
        failures=[p for p, v in enumerate(verdicts) if v.status == FAILED],
        worst=worst_index(verdicts),
        max_abs_error=max((v.abs_error for v in judged), default=math.nan),
        max_rel_error=max((v.rel_error for v in judged), default=math.nan),
    )
