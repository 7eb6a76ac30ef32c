"""Finite differences with Richardson extrapolation, error estimates and kink detection.

Along each probe direction ``u`` the oracle differentiates ``phi(t) = L(x + t*u)`` at ``t = 0``:

1. Steps ``t_j = t_0 / 2**j``. The first step is ``base_step * clip(|x|, 0.01, 1)``: relative to
   the input for small values (so ``log`` near 1e-3 stays in its domain), absolute for large ones
   (so ``sin`` at 1e6 is not sampled across periods). Steps whose evaluations are NaN/Inf (a
   domain edge), or where fn raises, are dropped and the sequence goes on below them.
2. Central differences ``D(t) = (phi(t) - phi(-t)) / 2t`` are extrapolated with Richardson's table
   (``D = phi' + c2 t^2 + c4 t^4 + ...``, :func:`gradcheck.oracles.richardson.best_of_table`).
   Each table entry gets an error estimate (its distance to its two parents plus the rounding
   error amplified by the table); the entry with the smallest estimate wins, and only once the
   finest step agrees with it (:func:`~gradcheck.oracles.richardson.agrees_with_finest`). If it
   has not converged, more halvings are added (up to ``max_steps``).
3. Rounding: one evaluation is off by ``2 * eps(dtype) * |v * out|`` per output element (the
   eps of each output's own dtype, float32's for a float64 output that is float32-exact at every
   perturbed point), or by the noise measured once per problem (10 evaluations) where that is
   larger (cancellation inside fn, float32 inside fn; :mod:`gradcheck.oracles.noise`), or by
   half a stair where ``L`` moves in stairs of rounding size
   (:func:`~gradcheck.oracles.noise.stair_noise`).
4. Kinks: the central difference of ``relu`` at 0 is 0.5 for every step, so step agreement proves
   nothing there. The one-sided quotients ``(phi(t)-phi(0))/t`` and ``(phi(0)-phi(-t))/t`` differ
   by ``t*phi''`` on smooth functions (halving with ``t``) but by a constant at a kink. A gap
   that stays put marks a kink; the one-sided derivatives then bound the valid subgradients. A gap
   that grows like ``1/t`` is a jump: the oracle says inconclusive
   (:func:`gradcheck.oracles.kinks.classify` under :data:`~gradcheck.oracles.kinks.FD_GAP_RULE`).
5. Staircases (``round``, ``floor``): when the finest steps no longer move the output while
   coarser ones did, and the extrapolation disagrees with them, the derivative is 0 within the
   function's resolution. Any other disagreement is inconclusive.

Output elements whose cotangent is 0 never contribute, whatever their value (check_function sets
it to 0 where an output is NaN/Inf at the input): a NaN there neither stops the check nor drops a
step. An input element that is NaN/Inf is not probed and stays put. Inputs with at most
``full_max`` elements are probed element by element (the full Jacobian
contracted with the cotangent); larger ones along ``directions`` random directions (seeded).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

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
from gradcheck.oracles.noise import (
    EPS32,
    NOISE_MULTIPLES,
    both_sides,
    evaluation_rounding,
    exact_in_float32,
    measured_noise,
    measurement_unit,
    rounding_magnitude,
    stair_noise,
)
from gradcheck.oracles.probe_outcome import Outcome, agrees, classify_probe
from gradcheck.oracles.richardson import Entry, best_of_table, converged
from gradcheck.oracles.steps import Quotients, halving_step, quotients
from gradcheck.tolerances import (
    FD_CONVERGED_RELATIVE,
    FD_CONVERGED_ROUNDING_FACTOR,
    FD_MEASURED_NOISE_SAFETY,
    FD_NOISE_SIDES_RATIO,
    FD_ROUNDING_PER_EVALUATION,
    FD_STAIR_ROUNDING_RELATIVE,
)

NOT_FINITE_AT_INPUT = "the function is not finite at the input"
NOT_FINITE_INPUT_ELEMENT = "the input is NaN/Inf here: no finite difference fits"


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
        result = Estimate.empty(probes.count)
        center = _center_of(problem)
        if center is None:
            for p in range(probes.count):
                result.reasons[p] = NOT_FINITE_AT_INPUT
            return result
        x_abs = problem.point.abs()
        finite = torch.isfinite(x_abs)
        typical = float(x_abs[finite].median()) if bool(finite.any()) else 0.0
        if probes.count:
            _measure(problem, center, self._first_steps(x_abs))
        for p in range(probes.count):
            if probes.is_basis and not bool(finite[p]):
                result.reasons[p] = NOT_FINITE_INPUT_ELEMENT
                continue
            direction = probes.direction(p, problem.size, problem.device)
            scale = float(x_abs[p]) if probes.is_basis else typical
            self._estimate_along(problem, center, direction, scale).store(result, p)
        return result

    def _estimate_along(
        self, problem: Problem, center: _Center, direction: torch.Tensor, scale: float
    ) -> Outcome:
        """One probe's outcome: from absolute steps, and for large inputs also from steps
        relative to ``|x|``, the better one."""
        outcome, stairs = self._estimate_probe(problem, center, direction, self._first_step(scale))
        if scale <= 1.0:
            return outcome
        # Large inputs: absolute steps suit oscillating functions (sin at 1e6), steps relative
        # to |x| suit slowly varying ones (sqrt at 1e4). Both carry the stairs of rounding
        # either one saw.
        first = self.base_step * scale
        relative, found = self._estimate_probe(problem, center, direction, first, stairs)
        if found > stairs:
            absolute = self._first_step(scale)
            outcome, _ = self._estimate_probe(problem, center, direction, absolute, found)
        return min(outcome, relative, key=Outcome.badness)

    def _first_step(self, scale: float) -> float:
        return self.base_step * min(max(scale, 0.01), 1.0)

    def _first_steps(self, x_abs: torch.Tensor) -> torch.Tensor:
        """:meth:`_first_step` of every element (0 where the input is NaN/Inf: it stays put)."""
        return torch.where(torch.isfinite(x_abs), self.base_step * x_abs.clamp(0.01, 1.0), 0.0)

    def _estimate_probe(
        self,
        problem: Problem,
        center: _Center,
        direction: torch.Tensor,
        first: float,
        stairs: float = 0.0,
    ) -> tuple[Outcome, float]:
        """The outcome of one step sequence from ``first``, and the stair noise it read (at
        least ``stairs``, known from another sequence along the same probe)."""
        trace = _Trace(
            [torch.zeros_like(out, dtype=torch.bool) for out in center.outputs],
            [mask.clone() if bool(mask.any()) else None for mask in center.narrow],
            stairs,
        )
        steps: list[Quotients] = []
        dropped = 0
        best = Entry(math.nan, math.inf)
        for j in range(self.max_steps):
            step = _evaluate(problem, center, direction, halving_step(first, j), trace)
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
            ) and agrees(steps, best)
            rounding_dominates = steps[-1].rounding > best.error
            if done or rounding_dominates:
                break
        return trace.explained(self._conclude(steps, best, first, center, trace)), trace.stairs

    def _conclude(
        self,
        steps: list[Quotients],
        best: Entry,
        first: float,
        center: _Center,
        trace: _Trace,
    ) -> Outcome:
        if len(steps) < 3:
            fails = "is NaN/Inf or raises" if trace.raised else "is NaN/Inf"
            return Outcome(
                reason=f"the function {fails} within {first / 2 ** (self.max_steps - 1):.3g} "
                "of the input on one side: no finite difference fits in its domain"
            )
        if not any(step.moved for step in steps):
            # No output changed at any step: the derivative is below the function's resolution,
            # about eps*|L|/h, which is all the oracle can claim.
            return Outcome(value=0.0, error=center.resolution(steps[-1].step, None, None))
        stairs = stair_noise(steps, center.size(trace.touched), FD_STAIR_ROUNDING_RELATIVE)
        stairs = trace.stairs = max(stairs, trace.stairs)
        if stairs > 0.0:
            # Rounding below float64 inside fn that the measurement did not see: every level
            # carries it, and the table is read again with it.
            steps = [_with_noise(step, stairs) for step in steps]
            best = best_of_table(steps)
        elif math.isnan(best.value):
            best = best_of_table(steps)
        narrow = [
            torch.zeros_like(touched) if mask is None else mask
            for mask, touched in zip(trace.narrow, trace.touched)
        ]
        resolution = center.resolution(steps[-1].step, trace.touched, narrow)
        staircase = max(resolution, steps[-1].rounding)
        return classify_probe(steps, best, staircase)


@dataclass
class _Center:
    """What every probe of one problem shares: the float64 outputs at the input, their
    cotangents, where the cotangent is not 0 (only there does an output contribute), each
    output's rounding weight (its dtype's eps in units of float64's), the elements that are
    float32-exact at the input and at every measurement point (``narrow``: computed in float32
    where they move), those that moved between the measurement points (``varied``) and their
    measured noise of one evaluation (absolute; zeros until measured)."""

    outputs: list[torch.Tensor]
    cotangents: list[torch.Tensor]
    live: list[torch.Tensor]
    weights: list[float]
    narrow: list[torch.Tensor]
    varied: list[torch.Tensor] = field(default_factory=list)
    noise: list[torch.Tensor] = field(default_factory=list)
    whole: list[bool] = field(default_factory=list)
    noisy: list[torch.Tensor | None] = field(default_factory=list)
    finite_point: bool = True

    def __post_init__(self) -> None:
        # Fast paths, decided once: outputs every element of which contributes, and each
        # output's measured noise contracted with |v| (None when nothing was measured).
        self.whole = [bool(mask.all()) for mask in self.live]
        self.noisy = [None] * len(self.outputs)

    def set_noise(self, noise: list[torch.Tensor]) -> None:
        """Record the measured noise (and its contraction with ``|v|``)."""
        self.noise = noise
        self.noisy = [
            (v.abs() * n) if bool((n > 0).any()) else None for v, n in zip(self.cotangents, noise)
        ]

    def weight(self, j: int, narrow: torch.Tensor) -> torch.Tensor:
        """Output ``j``'s rounding weight per element: its dtype's, or float32's where
        ``narrow``."""
        w = self.weights[j]
        return torch.where(narrow, max(w, EPS32 / EPS64), w)

    def magnitude(
        self, touched: list[torch.Tensor] | None, narrow: list[torch.Tensor] | None
    ) -> float:
        """The rounding magnitude of ``L`` at the input over the ``touched`` output elements
        (every contributing one when None), float32's rounding where ``narrow`` (when None: the
        problem's, where the measurement moved them; a constant 1.0 is float32-exact, but
        says nothing of how fn computes)."""
        assumed = measured = 0.0
        if narrow is None:
            narrow = [n & v for n, v in zip(self.narrow, self.varied)] if self.varied else []
            narrow = narrow or [torch.zeros_like(n) for n in self.narrow]
        for j, (v, out) in enumerate(zip(self.cotangents, self.outputs)):
            mask = self.live[j] if touched is None else self.live[j] & touched[j]
            assumed += float((self.weight(j, narrow[j]) * (v * out).abs())[mask].sum())
            measured += self.measured(j, mask)
        return rounding_magnitude(
            assumed, measured, FD_ROUNDING_PER_EVALUATION, FD_MEASURED_NOISE_SAFETY
        )

    def size(self, touched: list[torch.Tensor]) -> float:
        """``sum |v * out|`` at the input over the ``touched`` output elements."""
        return sum(
            float((v * out).abs()[live & moved].sum())
            for v, out, live, moved in zip(self.cotangents, self.outputs, self.live, touched)
        )

    def measured(self, j: int, mask: torch.Tensor) -> float:
        """The measured noise of output ``j``'s elements in ``mask``, contracted with ``|v|``."""
        noisy = self.noisy[j] if self.noisy else None
        return 0.0 if noisy is None else float((noisy * mask).sum())

    def finite(self, outputs: list[torch.Tensor]) -> bool:
        """Every contributing element of ``outputs`` is finite."""
        return all(
            bool(torch.isfinite(out).all() if whole else (torch.isfinite(out) | ~live).all())
            for out, live, whole in zip(outputs, self.live, self.whole)
        )

    def resolution(
        self,
        step: float,
        touched: list[torch.Tensor] | None,
        narrow: list[torch.Tensor] | None,
    ) -> float:
        """The smallest derivative a step of ``step`` resolves: the rounding of one level."""
        magnitude = self.magnitude(touched, narrow)
        return evaluation_rounding(magnitude, step, FD_ROUNDING_PER_EVALUATION)


@dataclass
class _Trace:
    """One probe's running record: the output elements it has moved so far, those float32-exact
    at every point so far, the noise of one evaluation its stairs of rounding show (see
    :func:`~gradcheck.oracles.noise.stair_noise`), and the first exception fn raised at one of
    its steps."""

    touched: list[torch.Tensor]
    narrow: list[torch.Tensor | None]
    stairs: float = 0.0
    raised: str | None = None

    def explained(self, outcome: Outcome) -> Outcome:
        """``outcome``, with the exception recorded in its reason when it is undecided."""
        if outcome.reason is None or self.raised is None:
            return outcome
        return Outcome(reason=f"{outcome.reason}; {self.raised}")


def _center_of(problem: Problem) -> _Center | None:
    """The outputs at the input with their cotangents and rounding weights; None when an output
    element that contributes (cotangent not 0) is NaN/Inf there."""
    raw = [
        out
        for out, v in zip(problem.outputs_at(problem.point), problem.cotangents)
        if v is not None
    ]
    cotangents = problem.used_cotangents
    outputs = [out.to(torch.float64) for out in raw]
    live = [v != 0 for v in cotangents]
    if not all(bool(torch.isfinite(out)[m].all()) for out, m in zip(outputs, live)):
        return None
    weights = [_rounding_weight(out.dtype) for out in raw]
    narrow = [exact_in_float32(out) for out in outputs]
    center = _Center(outputs, cotangents, live, weights, narrow)
    center.finite_point = bool(torch.isfinite(problem.point).all())
    return center


def _rounding_weight(dtype: torch.dtype) -> float:
    """The eps of ``dtype`` in units of float64's (1 for float64 and anything not floating)."""
    if not dtype.is_floating_point:
        return 1.0
    return max(1.0, float(torch.finfo(dtype).eps) / EPS64)


def _outputs(problem: Problem, point: torch.Tensor) -> list[torch.Tensor] | Exception:
    """fn's floating outputs at ``point``, or the exception it raised there."""
    try:
        return problem.floating_outputs_at(point)
    except Exception as error:  # fn is the caller's code: a raise makes the point unusable
        return error


def _measure(problem: Problem, center: _Center, first_steps: torch.Tensor) -> None:
    """Each output element's noise of one evaluation, measured once per problem (into
    ``center.noise``), and where it is float32-exact (``center.narrow``): fn at
    ``x +/- m*q*u`` (``u`` seeded random signs, ``q*u`` per element from
    :func:`~gradcheck.oracles.noise.measurement_unit`, ``m`` in
    :data:`~gradcheck.oracles.noise.NOISE_MULTIPLES`), each side on its own, combined by
    :func:`~gradcheck.oracles.noise.both_sides`. Nothing is measured where fn raises, and 0
    where it is NaN/Inf."""
    generator = torch.Generator().manual_seed(problem.seed)
    signs = torch.randint(0, 2, (problem.size,), generator=generator, dtype=torch.float64)
    unit = measurement_unit(problem.point, (2.0 * signs - 1.0).to(problem.device), first_steps)
    sides: list[list[torch.Tensor]] = []
    narrow = [mask.clone() for mask in center.narrow]
    varied = [torch.zeros_like(mask) for mask in center.narrow]
    for side in (1.0, -1.0):
        values = [_outputs(problem, problem.point + side * m * unit) for m in NOISE_MULTIPLES]
        columns = [v for v in values if not isinstance(v, Exception)]
        if len(columns) < len(values):
            return
        sides.append(
            [measured_noise(out, [v[j] for v in columns]) for j, out in enumerate(center.outputs)]
        )
        for j, out in enumerate(center.outputs):
            for v in columns:
                narrow[j] &= exact_in_float32(v[j])
                varied[j] |= v[j] != out
    center.set_noise(
        [
            torch.where(live, both_sides(plus, minus, FD_NOISE_SIDES_RATIO, rounding_size), 0.0)
            for live, plus, minus, rounding_size in zip(
                center.live,
                *sides,
                [FD_STAIR_ROUNDING_RELATIVE * out.abs() for out in center.outputs],
            )
        ]
    )
    center.narrow, center.varied = narrow, varied


def _evaluate(
    problem: Problem,
    center: _Center,
    direction: torch.Tensor,
    size: float,
    trace: _Trace,
) -> Quotients | None:
    """The quotients at step ``size``; None when the step is unusable (a contributing output is
    NaN/Inf at ``x +/- size*u``, fn raised there, or the step rounds away)."""
    plus_point = problem.point + size * direction
    minus_point = problem.point - size * direction
    plus, minus = _outputs(problem, plus_point), _outputs(problem, minus_point)
    for sign, side in (("+", plus), ("-", minus)):
        if isinstance(side, Exception) and trace.raised is None:
            trace.raised = (
                f"fn raised {type(side).__name__} at x {sign} {size:.3g}*u: "
                f"{str(side).strip().splitlines()[0][:200] if str(side).strip() else ''}"
            )
    if isinstance(plus, Exception) or isinstance(minus, Exception):
        return None
    if not (center.finite(plus) and center.finite(minus)):
        return None
    # The step actually taken: x + t is rounded, so measure it (exact for basis probes), over
    # the elements the direction moves (a NaN/Inf element elsewhere stays put).
    plus_moves, minus_moves = plus_point - problem.point, problem.point - minus_point
    if not center.finite_point:
        moving = direction != 0
        if not bool(moving.any()):
            return None
        plus_moves, minus_moves = plus_moves[moving], minus_moves[moving]
    plus_size = float(plus_moves.abs().max())
    minus_size = float(minus_moves.abs().max())
    if plus_size == 0.0 or minus_size == 0.0:
        return None
    return _level(center, plus, minus, size, (plus_size, minus_size), trace)


def _level(
    center: _Center,
    plus: list[torch.Tensor],
    minus: list[torch.Tensor],
    size: float,
    sizes: tuple[float, float],
    trace: _Trace,
) -> Quotients:
    """The quotients from the outputs at both sides of the input."""
    # Differences are taken output by output before contracting with v, so outputs the step
    # does not touch contribute exactly 0 and no rounding from the rest of L; elements whose
    # cotangent is 0 contribute nothing, even where they are NaN (0 * nan is nan).
    up = down = both = assumed = measured = 0.0
    moved = False
    for j, (v, p, c, m) in enumerate(zip(center.cotangents, plus, center.outputs, minus)):
        live = center.live[j]
        if center.whole[j]:
            up += float((v * (p - c)).sum())
            down += float((v * (c - m)).sum())
            both += float((v * (p - m)).sum())
            changed = (p != m) | (p != c)
        else:
            up += float(torch.where(live, v * (p - c), 0.0).sum())
            down += float(torch.where(live, v * (c - m), 0.0).sum())
            both += float(torch.where(live, v * (p - m), 0.0).sum())
            changed = ((p != m) | (p != c)) & live
        moved = moved or bool(changed.any())
        # Rounding counts every output this probe has ever moved: an output that stops
        # changing at a small step has hit its resolution, not a zero derivative.
        touched = trace.touched[j]
        touched |= changed
        narrow = trace.narrow[j]
        if narrow is None:
            weight: float | torch.Tensor = center.weights[j]
        else:
            narrow &= exact_in_float32(p) & exact_in_float32(m)
            weight = center.weight(j, narrow)
        sizes_sum = weight * v.abs() * (p.abs() + c.abs() + m.abs())
        assumed += float(sizes_sum[touched].sum())
        measured += center.measured(j, touched)
    magnitude = rounding_magnitude(
        assumed, measured, FD_ROUNDING_PER_EVALUATION, FD_MEASURED_NOISE_SAFETY
    )
    plus_size, minus_size = sizes
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


def _with_noise(step: Quotients, noise: float) -> Quotients:
    """``step`` with its rounding at least that of ``noise`` per evaluation."""
    magnitude = rounding_magnitude(0.0, noise, FD_ROUNDING_PER_EVALUATION, FD_MEASURED_NOISE_SAFETY)
    floor = evaluation_rounding(magnitude, step.step, FD_ROUNDING_PER_EVALUATION)
    return dataclasses.replace(step, rounding=max(step.rounding, floor))
