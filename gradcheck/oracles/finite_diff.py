"""Finite differences with Richardson extrapolation, error estimates and kink detection.

Along each probe direction ``u`` the oracle differentiates ``phi(t) = L(x + t*u)`` at ``t = 0``:

1. Steps ``t_j = t_0 / 2**j``. The first step is ``base_step * clip(|x|, 0.01, 1)``: relative to
   the input for small values (so ``log`` near 1e-3 stays in its domain), absolute for large ones
   (so ``sin`` at 1e6 is not sampled across periods). Steps whose evaluations are NaN/Inf (a
   domain edge) are dropped and the sequence goes on below them.
2. Central differences ``D(t) = (phi(t) - phi(-t)) / 2t`` are extrapolated with Richardson's table
   (``D = phi' + c2 t^2 + c4 t^4 + ...``). Each table entry gets an error estimate (its distance
   to its two parents plus the rounding error ``eps*|L|/t`` amplified by the table); the entry
   with the smallest estimate wins. If it has not converged, more halvings are added (up to
   ``max_steps``).
3. Kinks: the central difference of ``relu`` at 0 is 0.5 for every step, so step agreement proves
   nothing there. The one-sided quotients ``(phi(t)-phi(0))/t`` and ``(phi(0)-phi(-t))/t`` differ
   by ``t*phi''`` on smooth functions (halving with ``t``) but by a constant at a kink. A gap
   that stays put marks a kink; the one-sided derivatives then bound the valid subgradients. A gap
   that grows like ``1/t`` is a jump: the oracle says inconclusive.

Inputs with at most ``full_max`` elements are probed element by element (the full Jacobian
contracted with the cotangent); larger ones along ``directions`` random directions (seeded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from gradcheck.errors import InvalidArgument
from gradcheck.oracles.base import (
    DEFAULT_DIRECTIONS,
    EPS64,
    FULL_JACOBIAN_MAX_ELEMENTS,
    Estimate,
    Oracle,
    Probes,
    Problem,
)


@dataclass(frozen=True)
class _Step:
    """One evaluated step pair: central and one-sided quotients and their rounding error."""

    size: float
    central: float
    forward: float
    backward: float
    rounding: float
    moved: bool


class FiniteDifference(Oracle):
    """Central differences with Richardson extrapolation (``oracle="finite_difference"``).

    ``base_step`` scales the first step, ``min_steps``/``max_steps`` bound the number of halvings,
    ``full_max`` is the element count up to which every element is probed, ``directions`` the
    number of random directions beyond it.
    """

    name = "finite_difference"

    def __init__(
        self,
        *,
        base_step: float = 1e-3,
        min_steps: int = 6,
        max_steps: int = 16,
        full_max: int = FULL_JACOBIAN_MAX_ELEMENTS,
        directions: int = DEFAULT_DIRECTIONS,
    ) -> None:
        if not (isinstance(base_step, (int, float)) and 0 < base_step < 1):
            raise InvalidArgument(
                f"Got base_step={base_step!r}, but base_step must be a number in (0, 1). "
                "Try base_step=1e-3."
            )
        if not (isinstance(min_steps, int) and isinstance(max_steps, int) and min_steps >= 2):
            raise InvalidArgument(
                f"Got min_steps={min_steps!r}, max_steps={max_steps!r}, but both must be "
                "integers with 2 <= min_steps <= max_steps. Try min_steps=6, max_steps=16."
            )
        if max_steps < min_steps:
            raise InvalidArgument(
                f"Got min_steps={min_steps}, max_steps={max_steps}, but max_steps must be >= "
                "min_steps."
            )
        for label, value in (("full_max", full_max), ("directions", directions)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgument(
                    f"Got {label}={value!r}, but {label} must be a positive integer."
                )
        self.base_step = float(base_step)
        self.min_steps = min_steps
        self.max_steps = max_steps
        self.full_max = full_max
        self.directions = directions

    def describe(self) -> str:
        """Constructor text for reproduction lines."""
        return (
            f"FiniteDifference(base_step={self.base_step}, min_steps={self.min_steps}, "
            f"max_steps={self.max_steps}, full_max={self.full_max}, "
            f"directions={self.directions})"
        )

    def estimate(self, problem: Problem, probes: Probes) -> Estimate:
        """Richardson-extrapolated directional derivatives of ``L`` along every probe."""
        center = problem.floating_outputs_at(problem.point)
        result = Estimate.empty(probes.count)
        if not all(bool(torch.isfinite(out).all()) for out in center):
            for p in range(probes.count):
                result.reasons[p] = "the function is not finite at the input"
            return result
        x_abs = problem.point.abs()
        for p in range(probes.count):
            direction = probes.direction(p, problem.size, problem.device)
            scale = float(x_abs[p]) if probes.is_basis else float(x_abs.median())
            outcome = self._estimate_probe(problem, direction, self._first_step(scale), center)
            if scale > 1.0:
                # Large inputs: absolute steps suit oscillating functions (sin at 1e6), steps
                # relative to |x| suit slowly varying ones (sqrt at 1e4). Keep the better one.
                relative = self._estimate_probe(problem, direction, self.base_step * scale, center)
                outcome = min(outcome, relative, key=_Outcome.badness)
            outcome.store(result, p)
        return result

    def _first_step(self, scale: float) -> float:
        return self.base_step * min(max(scale, 0.01), 1.0)

    def _evaluate(
        self,
        problem: Problem,
        direction: torch.Tensor,
        size: float,
        center: list[torch.Tensor],
        support: list[torch.Tensor],
    ) -> _Step | None:
        plus_point = problem.point + size * direction
        minus_point = problem.point - size * direction
        plus = problem.floating_outputs_at(plus_point)
        minus = problem.floating_outputs_at(minus_point)
        if not all(bool(torch.isfinite(out).all()) for out in (*plus, *minus)):
            return None
        # The step actually taken: x + t is rounded, so measure it (exact for basis probes).
        plus_size = float((plus_point - problem.point).abs().max())
        minus_size = float((problem.point - minus_point).abs().max())
        if plus_size == 0.0 or minus_size == 0.0:
            return None
        # Differences are taken output by output before contracting with v, so outputs the step
        # does not touch contribute exactly 0 and no rounding from the rest of L.
        up = down = both = magnitude = 0.0
        moved = False
        for v, p, c, m, touched in zip(problem.used_cotangents, plus, center, minus, support):
            up += float((v * (p - c)).sum())
            down += float((v * (c - m)).sum())
            both += float((v * (p - m)).sum())
            changed = (p != m) | (p != c)
            moved = moved or bool(changed.any())
            # Rounding counts every output this probe has ever moved: an output that stops
            # changing at a small step has hit its resolution, not a zero derivative.
            touched |= changed
            magnitude += float((v.abs() * (p.abs() + c.abs() + m.abs()))[touched].sum())
        return _Step(
            size=size,
            central=both / (plus_size + minus_size),
            forward=up / plus_size,
            backward=down / minus_size,
            rounding=2.0 * EPS64 * magnitude / min(plus_size, minus_size),
            moved=moved,
        )

    def _estimate_probe(
        self,
        problem: Problem,
        direction: torch.Tensor,
        first: float,
        center: list[torch.Tensor],
    ) -> _Outcome:
        steps: list[_Step] = []
        support = [torch.zeros_like(out, dtype=torch.bool) for out in center]
        dropped = 0
        best = (math.nan, math.inf)
        for j in range(self.max_steps):
            step = self._evaluate(problem, direction, first / 2**j, center, support)
            if step is None:
                dropped += 1
                steps.clear()  # Richardson needs consecutive halvings: restart below the edge.
                continue
            steps.append(step)
            if len(steps) < min(self.min_steps, self.max_steps - dropped):
                continue
            best = _richardson(steps)
            converged = best[1] <= 1e-11 * abs(best[0]) + 2.0 * steps[-1].rounding
            rounding_dominates = steps[-1].rounding > best[1]
            if converged or rounding_dominates:
                break
        if len(steps) < 3:
            return _Outcome(
                reason=f"the function is NaN/Inf within {first / 2 ** (self.max_steps - 1):.3g} "
                "of the input on one side: no finite difference fits in its domain"
            )
        if not any(step.moved for step in steps):
            # No output changed at any step: the derivative is below the function's resolution,
            # about eps*|L|/h, which is all the oracle can claim.
            resolution = (
                2.0
                * EPS64
                * sum(
                    float((v * out).abs().sum()) for v, out in zip(problem.used_cotangents, center)
                )
            )
            return _Outcome(value=0.0, error=resolution / steps[-1].size)
        if math.isnan(best[0]):
            best = _richardson(steps)
        return _classify(steps, best)


@dataclass(frozen=True)
class _Outcome:
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


def _classify(steps: list[_Step], best: tuple[float, float]) -> _Outcome:
    """Smooth, kink, jump or unconverged, from the last steps' one-sided and central quotients."""
    last, previous, before = steps[-1], steps[-2], steps[-3]
    gap_last = last.forward - last.backward
    gap_previous = previous.forward - previous.backward
    noise = 4.0 * last.rounding + 1e-9 * max(abs(last.forward), abs(last.backward))
    significant = abs(gap_last) > noise and abs(gap_previous) > noise
    growing = abs(last.central) > 1.8 * abs(previous.central) > 1.8**2 * abs(before.central)
    if (significant and abs(gap_last) > 1.5 * abs(gap_previous)) or (
        growing and abs(last.central - previous.central) > noise
    ):
        return _Outcome(
            reason=f"difference quotients grow like 1/h ({last.forward:.6g} right, "
            f"{last.backward:.6g} left at h={last.size:.3g}): the function jumps here"
        )
    if significant and abs(gap_last) > 0.75 * abs(gap_previous):
        # A kink: one-sided derivatives, each extrapolated to first order.
        right = 2.0 * last.forward - previous.forward
        left = 2.0 * last.backward - previous.backward
        spread = max(abs(right - last.forward), abs(left - last.backward))
        return _Outcome(
            value=best[0],
            error=spread + last.rounding,
            lower=min(left, right),
            upper=max(left, right),
        )
    value, error = best
    unconverged = error > 1e-4 * max(abs(value), abs(last.central)) and error > 100 * last.rounding
    if not (math.isfinite(value) and math.isfinite(error)) or unconverged:
        return _Outcome(
            reason=f"successive finite-difference estimates do not converge (best "
            f"{value:.6g} +/- {error:.2g})"
        )
    return _Outcome(value=value, error=error)


def _richardson(steps: list[_Step]) -> tuple[float, float]:
    """The best Richardson-table entry and its error estimate, for halving steps."""
    table: list[list[float]] = []
    best_value, best_error = steps[-1].central, math.inf
    for j, step in enumerate(steps):
        row = [step.central]
        for k in range(1, j + 1):
            factor = 4.0**k
            row.append(row[k - 1] + (row[k - 1] - table[j - 1][k - 1]) / (factor - 1.0))
        table.append(row)
        for k in range(1, j + 1):
            truncation = abs(row[k] - row[k - 1]) + abs(row[k] - table[j - 1][k - 1])
            # Each extrapolation level amplifies rounding by at most about 1 + 2/(4^k - 1).
            rounding = step.rounding * math.prod(1 + 2 / (4.0**i - 1) for i in range(1, k + 1))
            error = truncation + rounding
            if error < best_error:
                best_value, best_error = row[k], error
    return best_value, best_error
