"""Autograd against an oracle, element by element: the verdicts and the mismatch text.

An element passes when ``|autograd - oracle| <= atol + rtol*|oracle| + error_factor*error``. On a
kink the oracle gives an interval of valid subgradients and the element passes when autograd lies
in it (with the same slack). An element the oracle could not decide is inconclusive, never a
failure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gradcheck.oracles.base import Estimate
from gradcheck.results import FAILED, INCONCLUSIVE, PASSED
from gradcheck.tolerances import Tolerance

OK = "ok"
KINK = "kink"
FAIL = "fail"
UNDECIDED = "inconclusive"


@dataclass(frozen=True)
class Verdict:
    """One element's outcome: ``status``, the error that was judged and what was allowed."""

    status: str
    abs_error: float
    rel_error: float
    allowed: float

    @property
    def excess(self) -> float:
        """How far past its tolerance the element is, as a ratio (> 1 fails)."""
        if self.status == UNDECIDED:
            return -math.inf
        if self.allowed == 0.0:
            return math.inf if self.abs_error > 0 else 0.0
        return self.abs_error / self.allowed


def judge(
    autograd: Sequence[float],
    autograd_noise: Sequence[float],
    estimate: Estimate,
    tolerance: Tolerance,
) -> list[Verdict]:
    """The verdict of every element (probe)."""
    verdicts = []
    for p, value in enumerate(autograd):
        if estimate.reasons[p] is not None:
            verdicts.append(Verdict(UNDECIDED, math.nan, math.nan, math.nan))
            continue
        noise = estimate.errors[p] + autograd_noise[p]
        lower, upper = estimate.lower[p], estimate.upper[p]
        if lower is not None and upper is not None:
            reference = lower if value < lower else upper if value > upper else value
            allowed = tolerance.allowed(max(abs(lower), abs(upper)), noise)
            status = KINK
        else:
            reference = estimate.values[p]
            allowed = tolerance.allowed(reference, noise)
            status = OK
        error = abs(value - reference) if math.isfinite(value) else math.inf
        if not error <= allowed:
            status = FAIL
        scale = max(abs(reference), abs(value))
        if error == 0:
            relative = 0.0
        else:
            relative = error / scale if scale > 0 and math.isfinite(error) else math.inf
        verdicts.append(Verdict(status, error, relative, allowed))
    return verdicts


def worst_index(verdicts: Sequence[Verdict]) -> int | None:
    """The element furthest past (or closest to) its tolerance; None if none was decided."""
    decided = [p for p, v in enumerate(verdicts) if v.status != UNDECIDED]
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
    decided = [p for p, v in enumerate(verdicts) if v.status != UNDECIDED]
    judged = [verdicts[p] for p in decided]
    return Summary(
        decided=decided,
        failures=[p for p, v in enumerate(verdicts) if v.status == FAIL],
        worst=worst_index(verdicts),
        max_abs_error=max((v.abs_error for v in judged), default=math.nan),
        max_rel_error=max((v.rel_error for v in judged), default=math.nan),
    )


def format_number(value: float | None, digits: int = 6) -> str:
    """A compact number for messages: ``digits`` significant digits (6 by default)."""
    if value is None:
        return "-"
    return f"{value:.{digits}g}"


def distinguishing_digits(a: float, b: float) -> int:
    """Enough significant digits (6 to 17) for ``a`` and ``b`` to print differently."""
    scale = max(abs(a), abs(b))
    if a == b or scale == 0 or not math.isfinite(a - b):
        return 6
    return min(17, max(6, math.ceil(-math.log10(abs(a - b) / scale)) + 2))


def failure_text(
    *,
    headline: str,
    where: str,
    point: float | None,
    autograd: float,
    oracle_name: str,
    oracle_value: float,
    error_estimate: float,
    lower: float | None,
    upper: float | None,
    verdict: Verdict,
    tolerance: Tolerance,
    failed: int,
    total: int,
    reproduce: str,
    measured_label: str = "autograd",
) -> str:
    """The mismatch message in the shape of the design note (headline, where, numbers, rule).

    ``measured_label`` names the side under test (``"measured"`` for values that are not
    gradients)."""
    at = f" = {format_number(point)}" if point is not None else ""
    digits = 6
    if lower is not None and upper is not None:
        bounds = f"[{format_number(lower)}, {format_number(upper)}]"
        judged = f"{oracle_name} subgradients {bounds} (a kink)"
    else:
        digits = distinguishing_digits(autograd, oracle_value)
        judged = f"{oracle_name} {format_number(oracle_value, digits)} (+/- {error_estimate:.1g})"
    rule = (
        f"tolerance {tolerance.atol:.1e} + {tolerance.rtol:.1e}*|oracle| + "
        f"{tolerance.error_factor:g}*error = {verdict.allowed:.2e}"
    )
    return "\n".join(
        [
            headline,
            f"  worst at {where}{at}: {measured_label} {format_number(autograd, digits)}, {judged}",
            f"  |diff| {verdict.abs_error:.2e} > {rule}; {failed} of {total} elements fail",
            f"  reproduce: {reproduce}",
        ]
    )
