"""One probe's outcome in the element-wise finite-difference engine: a value and its error, a
kink's subgradient interval, a staircase's 0, or the reason it is undecided, read from the
whole step sequence (:func:`classify_probe`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from gradcheck.oracles.base import Estimate
from gradcheck.oracles.kinks import FD_GAP_RULE, JUMP, KINK, classify, one_sided_limits
from gradcheck.oracles.richardson import Entry, agree_with_finest, agrees_with_finest
from gradcheck.oracles.steps import Quotients
from gradcheck.tolerances import (
    FD_FINEST_ROUNDING_FACTOR,
    FD_FINEST_TRUNCATION_FACTOR,
    FD_UNCONVERGED_RELATIVE,
    FD_UNCONVERGED_ROUNDING_FACTOR,
)


def agrees(steps: list[Quotients], best: Entry) -> bool:
    """The finest step does not contradict ``best``."""
    return agrees_with_finest(steps, best, FD_FINEST_ROUNDING_FACTOR, FD_FINEST_TRUNCATION_FACTOR)


def agree(
    central: torch.Tensor, last_rounding: torch.Tensor, value: torch.Tensor, error: torch.Tensor
) -> torch.Tensor:
    """:func:`agrees` of many step sequences at once (``central``: ``(levels, sequences)``)."""
    return agree_with_finest(
        central,
        last_rounding,
        value,
        error,
        FD_FINEST_ROUNDING_FACTOR,
        FD_FINEST_TRUNCATION_FACTOR,
    )


@dataclass(frozen=True)
class Outcome:
    """One probe's estimate: a value and error, a kink interval, or the reason it is undecided."""

    value: float = math.nan
    error: float = math.inf
    lower: float | None = None
    upper: float | None = None
    reason: str | None = None

    def badness(self) -> float:
        """Smaller is better: undecided outcomes lose to any decided one."""
        return math.inf if self.reason is not None else self.error

    def store(self, result: Estimate, p: int) -> None:
        """Write this outcome into slot ``p`` of ``result``."""
        result.values[p], result.errors[p] = self.value, self.error
        result.lower[p], result.upper[p], result.reasons[p] = self.lower, self.upper, self.reason


def classify_probe(steps: list[Quotients], best: Entry, staircase: float) -> Outcome:
    """Smooth, kink, jump, staircase or unconverged, from the last steps' one-sided and central
    quotients; ``staircase`` is the error of a staircase's 0 (the finest level's resolution)."""
    last = steps[-1]
    shape = classify(steps, FD_GAP_RULE)
    if shape == JUMP:
        return Outcome(
            reason=f"difference quotients grow like 1/h ({last.forward:.6g} right, "
            f"{last.backward:.6g} left at h={last.step:.3g}): the function jumps here"
        )
    if shape == KINK:
        # A kink: one-sided derivatives, each extrapolated to first order.
        left, right, spread = one_sided_limits(last, steps[-2])
        return Outcome(
            value=best.value,
            error=spread + last.rounding,
            lower=min(left, right),
            upper=max(left, right),
        )
    value, error = best
    if not agrees(steps, best):
        if not (last.moved or steps[-2].moved):
            # A staircase (round, floor): coarse steps cross its edges, the finest no longer
            # move the output. The derivative is 0 within the resolution.
            return Outcome(value=0.0, error=staircase)
        return Outcome(
            reason=f"the step sequence disagrees with its best extrapolation ({value:.6g} +/- "
            f"{error:.2g}, but {last.central:.6g} at the finest step h={last.step:.3g})"
        )
    unconverged = (
        error > FD_UNCONVERGED_RELATIVE * max(abs(value), abs(last.central))
        and error > FD_UNCONVERGED_ROUNDING_FACTOR * last.rounding
    )
    if not (math.isfinite(value) and math.isfinite(error)) or unconverged:
        return Outcome(
            reason=f"successive finite-difference estimates do not converge (best "
            f"{value:.6g} +/- {error:.2g})"
        )
    return Outcome(value=value, error=error)
