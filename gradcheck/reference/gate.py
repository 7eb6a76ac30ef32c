"""The reference gate: one tensor of a low-precision implementation against its float64 golden
value, with the reference's own error in the same dtype as the yardstick.

Two error measures, both against the golden value ``g`` on its finite elements:

- normwise: ``||x - g||_2 / ||g||_2`` (the plain norm of the difference where ``g`` is 0);
- elementwise: ``max_i |x_i - g_i| / max(|g_i|, mean |g|)``, each element relative to its own
  size, and an element near 0 relative to the tensor's mean size (so a cancellation-heavy element
  cannot blow the measure up by itself, and a single wrong element of a large tensor still
  shows).

The candidate passes when, for both measures, its error is at most ``multiplier`` times the
larger of the reference's error and the dtype's floor (:func:`~gradcheck.tolerances.
reference_floor`). The order of the rules: a non-finite candidate value where the golden value is
finite fails (unless the reference overflows there too: then the case does not fit the dtype and
is inconclusive); a reference without a correct digit normwise is inconclusive (elementwise:
that measure is not judged); then the gate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from gradcheck import validation
from gradcheck.errors import InvalidArgument
from gradcheck.judge import Verdict, judge_element
from gradcheck.status import FAILED, INCONCLUSIVE, PASSED
from gradcheck.tolerances import (
    REFERENCE_MULTIPLIER,
    REFERENCE_NO_CORRECT_DIGIT,
    Tolerance,
    reference_floor,
)


@dataclass(frozen=True)
class Errors:
    """One tensor's error against the golden value: normwise and elementwise, and how many
    elements are non-finite where the golden value is finite (with the first such index)."""

    normwise: float
    elementwise: float
    nonfinite: int
    first_nonfinite: tuple[int, ...] | None


@dataclass(frozen=True)
class GateVerdict:
    """The gate's outcome for one tensor: status and, unless passed, the reason."""

    status: str
    note: str


def errors(value: torch.Tensor, golden: torch.Tensor) -> Errors:
    """``value``'s errors against ``golden`` (float64, same shape), on golden's finite elements."""
    value = value.detach().to(device=golden.device, dtype=torch.float64)
    finite = torch.isfinite(golden)
    bad = finite & ~torch.isfinite(value)
    count = int(bad.sum())
    first = tuple(int(i) for i in bad.nonzero()[0].tolist()) if count else None
    keep = finite & ~bad
    g, x = golden[keep], value[keep]
    if g.numel() == 0:
        return Errors(0.0, 0.0, count, first)
    difference = (x - g).abs()
    scale = float(g.norm())
    distance = float(difference.norm())
    normwise = distance / scale if scale > 0 else distance
    size = g.abs().clamp_min(float(g.abs().mean()))
    ratios = torch.where(size > 0, difference / size.clamp_min(1e-300), difference)
    return Errors(normwise, float(ratios.max()), count, first)


def compared_elements(golden: torch.Tensor) -> tuple[int, int]:
    """How many of golden's elements are compared (finite) and how many are left out."""
    finite = int(torch.isfinite(golden).sum())
    return finite, golden.numel() - finite


@dataclass(frozen=True)
class Limits:
    """What the gate allows one tensor: the dtype's floor and, for each measure, ``multiplier``
    times the larger of the reference's own error and the floor."""

    floor: float
    normwise: float
    elementwise: float


def validated_multiplier(value: object) -> float:
    """The gate's ``multiplier``: a finite number >= 1."""
    number = math.nan if isinstance(value, bool) else value
    if not isinstance(number, (int, float)) or not 1.0 <= number < math.inf:
        raise InvalidArgument(
            f"Got multiplier={validation.short_repr(value)}, but multiplier must be a "
            f"finite number >= 1 (fn may be that many times as far from float64 as the "
            f"reference). Pass, for example, multiplier={REFERENCE_MULTIPLIER:g}."
        )
    return float(number)


def limits(baseline: Errors, dtype: torch.dtype, multiplier: float) -> Limits:
    """The gate's limits for a tensor whose reference in ``dtype`` has ``baseline`` errors."""
    floor = reference_floor(dtype)
    return Limits(
        floor,
        multiplier * max(baseline.normwise, floor),
        multiplier * max(baseline.elementwise, floor),
    )


def judge(
    candidate: Errors, baseline: Errors, dtype: torch.dtype, multiplier: float, label: str
) -> GateVerdict:
    """The gate for one tensor: ``candidate`` (the implementation) against ``baseline`` (the
    reference in the same ``dtype``), both measured against the golden value."""
    allowed = limits(baseline, dtype, multiplier)
    floor, allowed_norm, allowed_element = allowed.floor, allowed.normwise, allowed.elementwise
    dtype_name = str(dtype).removeprefix("torch.")

    def verdict(status: str, note: str) -> GateVerdict:
        return GateVerdict(status, note)

    if candidate.nonfinite:
        if baseline.nonfinite:
            return verdict(
                INCONCLUSIVE,
                f"the reference in {dtype_name} is non-finite too ({baseline.nonfinite} "
                f"element(s)) where float64 is finite: the values do not fit {dtype_name}",
            )
        return verdict(
            FAILED,
            f"{candidate.nonfinite} non-finite value(s) in {label} where the float64 value is "
            f"finite (first at index {list(candidate.first_nonfinite or ())})",
        )
    if baseline.nonfinite:
        return verdict(
            INCONCLUSIVE,
            f"the reference in {dtype_name} is non-finite at {baseline.nonfinite} element(s) "
            "where float64 is finite, so it gives no yardstick there",
        )
    if not baseline.normwise < REFERENCE_NO_CORRECT_DIGIT:
        return verdict(
            INCONCLUSIVE,
            f"ill-conditioned in {dtype_name}: the reference itself is off by "
            f"{baseline.normwise:.2g} normwise, no correct digit, so no error can be judged",
        )
    measures = [("normwise", candidate.normwise, allowed_norm)]
    unjudged = ""
    if baseline.elementwise < REFERENCE_NO_CORRECT_DIGIT:
        measures.append(("elementwise", candidate.elementwise, allowed_element))
    else:
        unjudged = (
            f"elementwise not judged: some element of the reference in {dtype_name} is off by "
            f"{baseline.elementwise:.2g} (no correct digit); normwise decides"
        )
    over = [
        f"{measure} {error:.3g} > {allowed:.3g}"
        for measure, error, allowed in measures
        if _within(error, allowed).status == FAILED
    ]
    if over:
        failure = (
            f"error {' and '.join(over)} ({multiplier:g} x the reference's own "
            f"{dtype_name} error or the floor {floor:.2g})"
        )
        return verdict(FAILED, "; ".join(filter(None, [failure, unjudged])))
    return verdict(PASSED, unjudged)


def _within(error: float, allowed: float) -> Verdict:
    """The one judge (:func:`gradcheck.judge.judge_element`) on ``error <= allowed``."""
    return judge_element(error, Tolerance(atol=allowed, rtol=0.0, error_factor=0.0), oracle=0.0)


def ratio(candidate: float, baseline: float) -> float:
    """``candidate / baseline``: 0 when both are 0, inf when only the baseline is 0."""
    if baseline > 0:
        return candidate / baseline
    return 0.0 if candidate == 0 else math.inf
