"""Finite differences with Richardson extrapolation, error estimates and kink detection.

Along each probe direction ``u`` the oracle differentiates ``phi(t) = L(x + t*u)`` at ``t = 0``:

1. Steps ``t_j = t_0 / 2**j``. The first step is ``base_step * clip(|x|, 0.01, 1)``: relative to
   the input for small values (so ``log`` near 1e-3 stays in its domain), absolute for large ones
   (so ``sin`` at 1e6 is not sampled across periods). Steps whose evaluations are NaN/Inf (a
   domain edge) are dropped and the sequence goes on below them.
2. Central differences ``D(t) = (phi(t) - phi(-t)) / 2t`` are extrapolated with Richardson's table
   (``D = phi' + c2 t^2 + c4 t^4 + ...``, :func:`gradcheck.oracles.richardson.best_of_table`).
   Each table entry gets an error estimate (its distance to its two parents plus the rounding
   error ``2*eps*|L|/t`` amplified by the table); the entry with the smallest estimate wins. If
   it has not converged, more halvings are added (up to ``max_steps``).
3. Kinks: the central difference of ``relu`` at 0 is 0.5 for every step, so step agreement proves
   nothing there. The one-sided quotients ``(phi(t)-phi(0))/t`` and ``(phi(0)-phi(-t))/t`` differ
   by ``t*phi''`` on smooth functions (halving with ``t``) but by a constant at a kink. A gap
   that stays put marks a kink; the one-sided derivatives then bound the valid subgradients. A gap
   that grows like ``1/t`` is a jump: the oracle says inconclusive
   (:func:`gradcheck.oracles.kinks.classify` under :data:`~gradcheck.oracles.kinks.FD_GAP_RULE`).

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
from gradcheck.oracles.kinks import FD_GAP_RULE, JUMP, KINK, classify, one_sided_limits
from gradcheck.oracles.noise import evaluation_rounding
from gradcheck.oracles.richardson import Entry, best_of_table, converged
from gradcheck.oracles.steps import Quotients, halving_step, quotients
from gradcheck.tolerances import (
    FD_CONVERGED_RELATIVE,
    FD_CONVERGED_ROUNDING_FACTOR,
    FD_ROUNDING_PER_EVALUATION,
    FD_UNCONVERGED_RELATIVE,
    FD_UNCONVERGED_ROUNDING_FACTOR,
)


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
        outputs = problem.outputs_at(problem.point)
        raw = [out for out, v in zip(outputs, problem.cotangents) if v is not None]
        center = [out.to(torch.float64) for out in raw]
        # An output computed below float64 (float32 weights in fn) rounds at its own epsilon.
        precision = [float(torch.finfo(out.dtype).eps) / EPS64 for out in raw]
        result = Estimate.empty(probes.count)
        # Output elements with v = 0 (left out: NaN/Inf at the input) never contribute.
        live = [v != 0 for v in problem.used_cotangents]
        if not all(bool(torch.isfinite(out[m]).all()) for out, m in zip(center, live)):
            for p in range(probes.count):
                result.reasons[p] = "the function is not finite at the input"
            return result
        x_abs = problem.point.abs()
        finite_point = torch.isfinite(x_abs)
        typical = float(x_abs[finite_point].median()) if bool(finite_point.any()) else 0.0
        for p in range(probes.count):
            if probes.is_basis and not bool(finite_point[p]):
                result.reasons[p] = "the input is NaN/Inf here: no finite difference fits"
                continue
            direction = probes.direction(p, problem.size, problem.device)
            scale = float(x_abs[p]) if probes.is_basis else typical
            first = self._first_step(scale)
            outcome = self._estimate_probe(problem, direction, first, center, precision)
            if scale > 1.0:
                # Large inputs: absolute steps suit oscillating functions (sin at 1e6), steps
                # relative to |x| suit slowly varying ones (sqrt at 1e4). Keep the better one.
                relative = self._estimate_probe(
                    problem, direction, self.base_step * scale, center, precision
                )
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
        precision: list[float],
    ) -> Quotients | None:
        plus_point = problem.point + size * direction
        minus_point = problem.point - size * direction
        plus = problem.floating_outputs_at(plus_point)
        minus = problem.floating_outputs_at(minus_point)
        live = [v != 0 for v in problem.used_cotangents]
        outputs = (*zip(plus, live), *zip(minus, live))
        if not all(bool(torch.isfinite(out[m]).all()) for out, m in outputs):
            return None
        # The step actually taken: x + t is rounded, so measure it (exact for basis probes),
        # over the elements the direction moves (a NaN/Inf element elsewhere stays put).
        moving = direction != 0
        plus_size = float((plus_point - problem.point)[moving].abs().max())
        minus_size = float((problem.point - minus_point)[moving].abs().max())
        if plus_size == 0.0 or minus_size == 0.0:
            return None
        # Differences are taken output by output before contracting with v, so outputs the step
        # does not touch contribute exactly 0 and no rounding from the rest of L.
        up = down = both = magnitude = 0.0
        moved = False
        for v, p, c, m, touched, alive, weight in zip(
            problem.used_cotangents, plus, center, minus, support, live, precision
        ):
            up += float(torch.where(alive, v * (p - c), 0.0).sum())
            down += float(torch.where(alive, v * (c - m), 0.0).sum())
            both += float(torch.where(alive, v * (p - m), 0.0).sum())
            changed = ((p != m) | (p != c)) & alive
            moved = moved or bool(changed.any())
            # Rounding counts every output this probe has ever moved: an output that stops
            # changing at a small step has hit its resolution, not a zero derivative.
            touched |= changed
            magnitude += weight * float((v.abs() * (p.abs() + c.abs() + m.abs()))[touched].sum())
        return quotients(
            size,
            up=up,
            down=down,
            both=both,
            plus_size=plus_size,
            minus_size=minus_size,
            rounding=evaluation_rounding(
                magnitude, min(plus_size, minus_size), FD_ROUNDING_PER_EVALUATION
            ),
            moved=moved,
        )

    def _estimate_probe(
        self,
        problem: Problem,
        direction: torch.Tensor,
        first: float,
        center: list[torch.Tensor],
        precision: list[float],
    ) -> _Outcome:
        steps: list[Quotients] = []
        support = [torch.zeros_like(out, dtype=torch.bool) for out in center]
        dropped = 0
        best = Entry(math.nan, math.inf)
        for j in range(self.max_steps):
            step = self._evaluate(
                problem, direction, halving_step(first, j), center, support, precision
            )
            if step is None:
                dropped += 1
                steps.clear()  # Richardson needs consecutive halvings: restart below the edge.
                continue
            steps.append(step)
            if len(steps) < min(self.min_steps, self.max_steps - dropped):
                continue
            best = best_of_table(steps)
            done = converged(
                *best, steps[-1].rounding, FD_CONVERGED_ROUNDING_FACTOR, FD_CONVERGED_RELATIVE
            )
            rounding_dominates = steps[-1].rounding > best.error
            if done or rounding_dominates:
                break
        if len(steps) < 3:
            return _Outcome(
                reason=f"the function is NaN/Inf within {first / 2 ** (self.max_steps - 1):.3g} "
                "of the input on one side: no finite difference fits in its domain"
            )
        if not any(step.moved for step in steps):
            # No output changed at any step: the derivative is below the function's resolution,
            # about eps*|L|/h, which is all the oracle can claim.
            magnitude = sum(
                weight * float(torch.where(v != 0, v * out, 0.0).abs().sum())
                for v, out, weight in zip(problem.used_cotangents, center, precision)
            )
            resolution = evaluation_rounding(magnitude, steps[-1].step, FD_ROUNDING_PER_EVALUATION)
            return _Outcome(value=0.0, error=resolution)
        if math.isnan(best.value):
            best = best_of_table(steps)
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


def _classify(steps: list[Quotients], best: Entry) -> _Outcome:
    """Smooth, kink, jump or unconverged, from the last steps' one-sided and central quotients."""
    last = steps[-1]
    shape = classify(steps, FD_GAP_RULE)
    if shape == JUMP:
        return _Outcome(
            reason=f"difference quotients grow like 1/h ({last.forward:.6g} right, "
            f"{last.backward:.6g} left at h={last.step:.3g}): the function jumps here"
        )
    if shape == KINK:
        # A kink: one-sided derivatives, each extrapolated to first order.
        left, right, spread = one_sided_limits(last, steps[-2])
        return _Outcome(
            value=best.value,
            error=spread + last.rounding,
            lower=min(left, right),
            upper=max(left, right),
        )
    value, error = best
    unconverged = (
        error > FD_UNCONVERGED_RELATIVE * max(abs(value), abs(last.central))
        and error > FD_UNCONVERGED_ROUNDING_FACTOR * last.rounding
    )
    if not (math.isfinite(value) and math.isfinite(error)) or unconverged:
        return _Outcome(
            reason=f"successive finite-difference estimates do not converge (best "
            f"{value:.6g} +/- {error:.2g})"
        )
    return _Outcome(value=value, error=error)
