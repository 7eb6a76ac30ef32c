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

Speed: the probes advance in lockstep. At each halving every probe still refining is evaluated
in one batch (:class:`~gradcheck.oracles.batch_eval.PointEvaluator`: one vmapped call where it
reproduces fn's numbers), the quotients of all of them are formed with a few tensor operations,
and a probe leaves the batch as soon as its estimate has converged. Probes are taken in groups
whose points and outputs fit :data:`GROUP_BYTES`, so memory stays a small multiple of the inputs
and outputs.

Output elements whose cotangent is 0 never contribute, whatever their value (check_function sets
it to 0 where an output is NaN/Inf at the input): a NaN there neither stops the check nor drops a
step. An input element that is NaN/Inf is not probed and stays put. Inputs with at most
``full_max`` elements are probed element by element (the full Jacobian
contracted with the cotangent); larger ones along ``directions`` random directions (seeded).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from gradcheck.errors import InvalidArgument
from gradcheck.oracles.base import (
    DEFAULT_DIRECTIONS,
    FULL_JACOBIAN_MAX_ELEMENTS,
    Estimate,
    Oracle,
    Probes,
    Problem,
)
from gradcheck.oracles.batch_eval import PointEvaluator, Rows
from gradcheck.oracles.fd_center import Center, NoisePoints, center_of, measure
from gradcheck.oracles.noise import (
    evaluation_rounding,
    exact_in_float32,
    rounding_magnitude,
    stair_noise,
)
from gradcheck.oracles.probe_outcome import Outcome, agree, agrees, classify_probe
from gradcheck.oracles.richardson import Entry, Table, best_of_table, best_of_tables, converged
from gradcheck.oracles.scratch import Scratch
from gradcheck.oracles.steps import QuotientRows, Quotients, divided, halving_step
from gradcheck.progress import Progress
from gradcheck.tolerances import (
    FD_CONVERGED_RELATIVE,
    FD_CONVERGED_ROUNDING_FACTOR,
    FD_MEASURED_NOISE_SAFETY,
    FD_ROUNDING_PER_EVALUATION,
    FD_STAIR_ROUNDING_RELATIVE,
)

NOT_FINITE_AT_INPUT = "the function is not finite at the input"
NOT_FINITE_INPUT_ELEMENT = "the input is NaN/Inf here: no finite difference fits"

SCALAR_TABLES_MAX = 40
"""Groups of at most this many sequences read their first tables level by level, in floats:
one sequence's table costs about 8 us there, the batched tables about 300 us whatever their
number (measured crossover: 40 to 48 sequences)."""

GROUP_BYTES = 64 * 2**20
"""The most bytes of perturbed points, outputs and per-probe masks one group of probes holds
(at least one probe per group, however large)."""


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

    def estimate(
        self, problem: Problem, probes: Probes, progress: Progress | None = None
    ) -> Estimate:
        """Richardson-extrapolated directional derivatives of ``L`` along every probe
        (``progress``, when given, is told how many probes are done after each group)."""
        result = Estimate.empty(probes.count)
        center = center_of(problem)
        if center is None:
            for p in range(probes.count):
                result.reasons[p] = NOT_FINITE_AT_INPUT
            return result
        x_abs = problem.point.abs()
        finite = torch.isfinite(x_abs)
        evaluator = PointEvaluator(problem, center.outputs)
        wanted: list[int] = []
        if probes.is_basis:
            scales = x_abs.tolist()
            for p, ok in enumerate(finite.tolist()):
                if ok:
                    wanted.append(p)
                else:
                    result.reasons[p] = NOT_FINITE_INPUT_ELEMENT
        else:
            typical = float(x_abs[finite].median()) if bool(finite.any()) else 0.0
            scales = [typical] * probes.count
            wanted = list(range(probes.count))
        run = _Lockstep(self, problem, center, probes, evaluator, progress)
        run.pending = NoisePoints.of(problem, self._first_steps(x_abs, finite))
        del x_abs, finite  # full-size: not held through the run
        # Absolute steps for every probe; large inputs also steps relative to |x| (the better
        # outcome wins): absolute steps suit oscillating functions (sin at 1e6), relative ones
        # slowly varying ones (sqrt at 1e4).
        plans = [
            (
                p,
                self._first_step(scales[p]),
                self.base_step * scales[p] if scales[p] > 1.0 else None,
            )
            for p in wanted
        ]
        for p, outcome in zip(wanted, run.outcomes(plans)):
            outcome.store(result, p)
        return result

    def _first_step(self, scale: float) -> float:
        return self.base_step * min(max(scale, 0.01), 1.0)

    def _first_steps(self, x_abs: torch.Tensor, finite: torch.Tensor) -> torch.Tensor:
        """:meth:`_first_step` of every element (0 where the input is NaN/Inf, as ``finite``
        marks it: it stays put)."""
        return torch.where(finite, self.base_step * x_abs.clamp(0.01, 1.0), 0.0)

    def _conclude(
        self,
        steps: list[Quotients],
        best: Entry,
        first: float,
        center: Center,
        trace: _Trace,
        size: float,
        magnitude: float,
    ) -> Outcome:
        """One sequence's outcome; ``size`` is ``sum |v * out|`` and ``magnitude`` the rounding
        magnitude of ``L`` at the input, both over the output elements it moved."""
        if len(steps) < 3:
            fails = "is NaN/Inf or raises" if trace.raised else "is NaN/Inf"
            return Outcome(
                reason=f"the function {fails} within {first / 2 ** (self.max_steps - 1):.3g} "
                "of the input on one side: no finite difference fits in its domain"
            )
        if not any(step.moved for step in steps):
            # No output changed at any step: the derivative is below the function's resolution,
            # about eps*|L|/h, which is all the oracle can claim.
            error = evaluation_rounding(
                center.overall_magnitude(), steps[-1].step, FD_ROUNDING_PER_EVALUATION
            )
            return Outcome(value=0.0, error=error)
        stairs = stair_noise(steps, size, FD_STAIR_ROUNDING_RELATIVE)
        stairs = trace.stairs = max(stairs, trace.stairs)
        if stairs > 0.0:
            # Rounding below float64 inside fn that the measurement did not see: every level
            # carries it, and the table is read again with it.
            steps = [_with_noise(step, stairs) for step in steps]
            best = best_of_table(steps)
        elif math.isnan(best.value):
            best = best_of_table(steps)
        resolution = evaluation_rounding(magnitude, steps[-1].step, FD_ROUNDING_PER_EVALUATION)
        staircase = max(resolution, steps[-1].rounding)
        return classify_probe(steps, best, staircase)


@dataclass
class _Sequence:
    """One probe's step sequence from ``first``: its levels since the last dropped step, their
    Richardson table, the best entry read so far, and whether it has finished."""

    probe: int
    first: float
    table: Table = field(default_factory=Table)
    steps: list[Quotients] = field(default_factory=list)
    dropped: int = 0
    best: Entry = field(default_factory=lambda: Entry(math.nan, math.inf))
    raised: str | None = None
    finished: bool = False

    def take(self, levels: list[Quotients], best: Entry, finished: bool) -> None:
        """Take a first block of levels whose table and stopping rule were read together."""
        self.steps = list(levels)
        self.best, self.finished = best, finished
        if not finished:
            for level in levels:
                self.table.add(level)

    def advance(self, level: Quotients | None, min_steps: int, max_steps: int) -> None:
        """Take the next level (None: the step was unusable) and decide whether to stop."""
        if level is None:
            self.dropped += 1
            self.steps.clear()  # Richardson needs consecutive halvings: restart below the edge.
            self.table.clear()
            return
        self.steps.append(level)
        self.table.add(level)
        if len(self.steps) < min(min_steps, max_steps - self.dropped):
            return
        self.best = best = self.table.best()
        done = converged(
            *best, level.rounding, FD_CONVERGED_ROUNDING_FACTOR, FD_CONVERGED_RELATIVE
        ) and agrees(self.steps, best)
        self.finished = done or level.rounding > best.error

    def advance_all(
        self, levels: Sequence[Quotients | None], min_steps: int, max_steps: int
    ) -> None:
        """:meth:`advance` through ``levels`` until finished, with the same decisions: the
        usable levels before the stopping rule is first read are taken in one run."""
        i = 0
        while i < len(levels) and not self.finished:
            unread = min(min_steps, max_steps - self.dropped) - len(self.steps) - 1
            if levels[i] is None or unread < 1:
                self.advance(levels[i], min_steps, max_steps)
                i += 1
                continue
            run: list[Quotients] = []
            while i < len(levels) and len(run) < unread and (level := levels[i]) is not None:
                run.append(level)
                i += 1
            self.steps.extend(run)
            self.table.extend(run)


_Traced = tuple["_Sequence", "_Trace", float, float]
"""A finished sequence, its record, and ``sum |v * out|`` and the rounding magnitude over the
output elements it moved."""


class _Lockstep:
    """Runs the step sequences of one problem together, a group of probes per batch of
    evaluations, and concludes each probe's outcome from its sequences."""

    def __init__(
        self,
        oracle: FiniteDifference,
        problem: Problem,
        center: Center,
        probes: Probes,
        evaluator: PointEvaluator,
        progress: Progress | None,
    ) -> None:
        self.oracle, self.problem, self.center = oracle, problem, center
        self.probes, self.evaluator, self.progress = probes, evaluator, progress
        self.pending: NoisePoints | None = None
        out_elements = sum(out.numel() for out in center.outputs)
        per_level = 8 * (3 * problem.size + 12 * out_elements) + 1
        self.group_size = max(1, GROUP_BYTES // (oracle.min_steps * per_level))
        # A probe too large for its first min_steps levels in one batch takes fewer at once.
        self.span_limit = max(1, GROUP_BYTES // per_level)
        self.scratch = Scratch(problem.device)

    def outcomes(self, plans: Sequence[tuple[int, float, float | None]]) -> list[Outcome]:
        """The outcome of each ``(probe, absolute first step, relative first step or None)``."""
        results: list[Outcome] = []
        per_group = max(1, self.group_size // 2)
        for start in range(0, len(plans), per_group):
            chunk = plans[start : start + per_group]
            group: list[_Sequence] = []
            for p, absolute, relative in chunk:
                group.append(_Sequence(p, absolute))
                if relative is not None:
                    group.append(_Sequence(p, relative))
            marks = self._step(group)
            sizes = self.center.sizes(marks.touched, self.scratch)
            magnitudes = self.center.magnitudes(marks.touched, marks.narrow, self.scratch)
            traced = iter(
                (s, _Trace(0.0, s.raised), sizes[i], magnitudes[i]) for i, s in enumerate(group)
            )
            for _, _, relative in chunk:
                results.append(self._conclude(next(traced), next(traced) if relative else None))
            if self.progress is not None:
                self.progress(min(start + per_group, len(plans)), len(plans))
        return results

    def _conclude(
        self,
        absolute: _Traced,
        relative: _Traced | None,
    ) -> Outcome:
        """One probe's outcome. With both sequences, each carries the stairs of rounding either
        one saw: the relative one starts from the absolute one's, and the absolute one is read
        again with the relative one's when those are larger (reading a sequence does not change
        its evaluations, so it is not evaluated again)."""
        outcome, stairs = self._read(*absolute, 0.0)
        if relative is None:
            return outcome
        better, found = self._read(*relative, stairs)
        if found > stairs:
            outcome, _ = self._read(*absolute, found)
        return min(outcome, better, key=Outcome.badness)

    def _read(
        self, s: _Sequence, trace: _Trace, size: float, magnitude: float, stairs: float
    ) -> tuple[Outcome, float]:
        record = _Trace(stairs, trace.raised)
        outcome = self.oracle._conclude(
            s.steps, s.best, s.first, self.center, record, size, magnitude
        )
        return record.explained(outcome), record.stairs

    def _step(self, group: list[_Sequence]) -> _Marks:
        """Advance every sequence of ``group`` until it finishes or the steps run out. No
        sequence can finish before it has ``min_steps`` levels, so the first ``min_steps``
        steps of all of them are one batch; then one step per batch."""
        oracle = self.oracle
        marks = _Marks.start(self.center, len(group))
        every = self._directions([s.probe for s in group])
        j = 0
        while j < oracle.max_steps:
            active = [i for i, s in enumerate(group) if not s.finished]
            if not active:
                break
            directions = every if len(active) == len(group) else every[active]
            span = min(oracle.min_steps, self.span_limit) if j == 0 else 1
            block = self._levels([group[i] for i in active], active, marks, j, span, directions)
            marks.fresh = False
            self._advance(block, [group[i] for i in active], first=span == oracle.min_steps)
            j += span
        return marks

    def _advance(self, block: _Block, sequences: list[_Sequence], first: bool) -> None:
        """Take a block's levels. In the first block every sequence without a dropped step
        reaches ``min_steps`` levels at its last step, where its table is read and its
        stopping rule decided for all of them at once (:func:`best_of_tables`, the same digits
        as level by level); the others go level by level, and so do all of them in a group of
        at most :data:`SCALAR_TABLES_MAX` sequences, where the tables' tensor operations would
        cost more than the Python arithmetic."""
        oracle = self.oracle
        levels = block.levels()
        batched = first and len(sequences) > SCALAR_TABLES_MAX
        whole = block.usable.all(dim=0).tolist() if batched else [False] * len(sequences)
        if any(whole):
            q = block.quotients
            value, error = best_of_tables(q.central, q.rounding)
            last = q.rounding[-1]
            done = converged(
                value, error, last, FD_CONVERGED_ROUNDING_FACTOR, FD_CONVERGED_RELATIVE
            ) & agree(q.central, last, value, error)
            finished = (done | (last > error)).tolist()
            bests = zip(value.tolist(), error.tolist())
            for k, (s, ok, best) in enumerate(zip(sequences, whole, bests)):
                if ok:
                    s.take(
                        [level for row in levels if (level := row[k]) is not None],
                        Entry(*best),
                        finished[k],
                    )
        for k, s in enumerate(sequences):
            if not whole[k]:
                s.advance_all([row[k] for row in levels], oracle.min_steps, oracle.max_steps)

    def _directions(self, probes: list[int]) -> torch.Tensor:
        problem = self.problem
        if not self.probes.is_basis:
            rows = [self.probes.direction(p, problem.size, problem.device) for p in probes]
            return rows[0][None] if len(rows) == 1 else torch.stack(rows)
        directions = torch.zeros(len(probes), problem.size, dtype=torch.float64)
        directions[torch.arange(len(probes)), probes] = 1.0
        return directions.to(problem.device)

    def _measure_alone(self, points: int) -> None:
        """Where the noise measurement's points and the first batch of ``points`` points do not
        fit in one batch, measure the noise first, its points one at a time (before the batch's
        buffers are taken, so the two never hold memory at once)."""
        pending = self.pending
        if pending is None or self.evaluator.rows_per_call >= len(pending.multiples) + points + 2:
            return
        self.pending = None
        one_by_one = (
            self.evaluator.at(pending.row(i, self.scratch)[None], self.scratch)
            for i in range(len(pending.multiples))
        )
        measure(self.problem, self.center, one_by_one)
        self.scratch.drop("noise point")

    def _evaluate(self, points: torch.Tensor) -> Rows:
        """fn at ``points``; the first batch also carries the noise measurement's points
        (where they did not fit, :meth:`_measure_alone` has measured them already)."""
        pending, self.pending = self.pending, None
        if pending is None:
            return self.evaluator.at(points, self.scratch)
        count = len(pending.multiples)
        rows = self.evaluator.at(torch.cat([pending.stacked(), points]))
        measure(self.problem, self.center, [rows.head(count)])
        return rows.tail(count)

    def _levels(
        self,
        sequences: list[_Sequence],
        rows: list[int],
        marks: _Marks,
        j: int,
        span: int,
        directions: torch.Tensor,
    ) -> _Block:
        """The quotients of steps ``j`` to ``j + span - 1`` of every sequence (None where a step
        is unusable: a contributing output is NaN/Inf at ``x +/- h*u``, fn raised there, or the
        step rounds away), from one batch of evaluations, step by step."""
        problem, center = self.problem, self.center
        count = len(sequences)
        sizes = [[halving_step(s.first, j + t) for s in sequences] for t in range(span)]
        h = torch.tensor(sizes, dtype=torch.float64, device=problem.device)[:, :, None]
        shape = (span, count, problem.size)
        scratch = self.scratch
        self._measure_alone(2 * span * count)
        laid = scratch.take("points", (span, 2, count, problem.size))
        steps = torch.mul(h, directions, out=laid[:, 1])  # h*u, then x - h*u in its place
        torch.add(problem.point, steps, out=laid[:, 0])  # (span, count, size): x + h*u
        torch.sub(problem.point, steps, out=steps)
        evaluated = self._evaluate(laid.view(-1, problem.size))
        usable = self._returned(evaluated.errors, sequences, sizes)
        outputs = [out.reshape(span, 2, count, -1) for out in evaluated.outputs]
        for out, live, whole in zip(outputs, center.live, center.whole):
            usable &= _finite_rows(out, None if whole else ~live.reshape(-1)).all(dim=1)
        # The step actually taken: x + t is rounded, so measure it (exact for basis probes),
        # over the elements the direction moves (a NaN/Inf element elsewhere stays put).
        still = None
        if not center.finite_point:
            moving = directions != 0
            usable &= moving.any(dim=-1)
            still = ~moving
        moves = scratch.take("work", shape)
        plus_size = _largest(torch.sub(laid[:, 0], problem.point, out=moves), still)
        minus_size = _largest(torch.sub(problem.point, laid[:, 1], out=moves), still)
        smaller_size = torch.minimum(plus_size, minus_size)
        usable &= smaller_size != 0  # either side's step rounded away (sizes are |moves|)
        sums = _Sums(span, count, scratch)
        index = torch.tensor(rows, device=problem.device)
        at_point = evaluated.center or center.outputs
        for j_out, out in enumerate(outputs):
            c = at_point[j_out].reshape(-1)
            sums.add(center, j_out, (out[:, 0], c, out[:, 1]), usable, marks, index)
        magnitude = rounding_magnitude(
            sums.assumed, sums.measured, FD_ROUNDING_PER_EVALUATION, FD_MEASURED_NOISE_SAFETY
        )
        rounding = evaluation_rounding(magnitude, smaller_size, FD_ROUNDING_PER_EVALUATION)
        central, forward, backward = divided(sums.up, sums.down, sums.both, plus_size, minus_size)
        q = QuotientRows(h[:, :, 0], central, forward, backward, rounding, sums.moved)
        return _Block(sizes, usable, q)

    def _returned(
        self, raised: list[Exception | None], sequences: list[_Sequence], sizes: list[list[float]]
    ) -> torch.Tensor:
        """``(steps, sequences)``: where fn returned at both points of a step (``raised``: each
        point's exception, a step's plus points then its minus points), each sequence's first
        exception kept for its reason."""
        span, count = len(sizes), len(sequences)
        if all(error is None for error in raised):
            return torch.ones((span, count), dtype=torch.bool, device=self.problem.device)
        errors = [raised[t * 2 * count : (t + 1) * 2 * count] for t in range(span)]
        for t in range(span):
            _record_raises(sequences, sizes[t], errors[t])
        return torch.tensor(
            [[a is None and b is None for a, b in zip(e[:count], e[count:])] for e in errors],
            dtype=torch.bool,
            device=self.problem.device,
        )


def _finite_rows(out: torch.Tensor, ignored: torch.Tensor | None) -> torch.Tensor:
    """Whether every element of ``out`` is finite along its last dimension, leaving out the
    elements ``ignored`` marks. Without any left out, a finite sum proves every term finite (a
    NaN or Inf term makes every partial sum after it NaN or Inf), so one reduction answers the
    common case without a full-size mask."""
    if ignored is None:
        finite = torch.isfinite(out.sum(dim=-1))
        if bool(finite.all()):
            return finite
        return torch.isfinite(out).all(dim=-1)
    return (torch.isfinite(out) | ignored).all(dim=-1)


def _largest(moves: torch.Tensor, still: torch.Tensor | None) -> torch.Tensor:
    """The largest ``|move|`` along the last dimension, leaving out the elements ``still`` marks
    (``moves`` is a scratch buffer, overwritten)."""
    moves.abs_()
    if still is not None:
        moves.masked_fill_(still, 0.0)
    return moves.amax(dim=-1)


@dataclass
class _Block:
    """The quotients of a block of steps of several sequences, as ``(steps, sequences)``
    tensors (``quotients``), where each step was usable, and the step sizes as floats."""

    sizes: list[list[float]]
    usable: torch.Tensor
    quotients: QuotientRows

    def levels(self) -> list[list[Quotients | None]]:
        """Step by step, each sequence's quotients (None where the step was unusable)."""
        q = self.quotients
        columns = zip(
            q.central.tolist(),
            q.forward.tolist(),
            q.backward.tolist(),
            q.rounding.tolist(),
            q.moved.tolist(),
        )
        levels: list[list[Quotients | None]] = []
        for sizes, row, usable in zip(self.sizes, columns, self.usable.tolist()):
            level: list[Quotients | None] = list(map(Quotients._make, zip(sizes, *row)))
            if not all(usable):
                level = [quotients if ok else None for quotients, ok in zip(level, usable)]
            levels.append(level)
        return levels


def _record_raises(
    sequences: list[_Sequence], sizes: list[float], errors: list[Exception | None]
) -> None:
    """Keep the first exception fn raised at each sequence's steps, for its reason (``errors``:
    the plus points' then the minus points')."""
    count = len(sequences)
    for k, s in enumerate(sequences):
        for sign, error in (("+", errors[k]), ("-", errors[count + k])):
            if error is not None and s.raised is None:
                text = str(error).strip()
                s.raised = (
                    f"fn raised {type(error).__name__} at x {sign} {sizes[k]:.3g}*u: "
                    f"{text.splitlines()[0][:200] if text else ''}"
                )


@dataclass
class _Marks:
    """The output elements each sequence of a group has moved so far (``touched``), and those
    float32-exact at every point so far (``narrow``; None for an output with none at the
    input), one ``(group, elements)`` tensor per output."""

    touched: list[torch.Tensor]
    narrow: list[torch.Tensor | None]
    fresh: bool = True
    """No block has marked anything yet (``touched`` is all False)."""

    @classmethod
    def start(cls, center: Center, count: int) -> _Marks:
        """Nothing moved yet; float32-exact where the center and the measurement are."""
        touched = [
            torch.zeros((count, out.numel()), dtype=torch.bool, device=out.device)
            for out in center.outputs
        ]
        narrow = [
            mask.reshape(1, -1).repeat(count, 1) if bool(mask.any()) else None
            for mask in center.narrow
        ]
        return cls(touched, narrow)


class _Sums:
    """A block of steps' sums over the outputs, per step and sequence: the three differences
    contracted with ``v``, the assumed and the measured rounding, and whether any output
    moved. Full-size intermediates go to ``scratch``."""

    def __init__(self, span: int, count: int, scratch: Scratch) -> None:
        zeros = torch.zeros((span, count), dtype=torch.float64, device=scratch.device)
        self.up, self.down, self.both = zeros, zeros, zeros
        self.assumed, self.measured = zeros, zeros
        self.moved = torch.zeros((span, count), dtype=torch.bool, device=scratch.device)
        self.scratch = scratch

    def add(
        self,
        center: Center,
        j: int,
        values: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        usable: torch.Tensor,
        marks: _Marks,
        index: torch.Tensor,
    ) -> None:
        """Add output ``j``: its values ``(plus, at the point, minus)`` (``plus``/``minus``:
        ``(steps, sequences, elements)``), ``usable``: ``(steps, sequences)``."""
        plus, c, minus = values
        # Differences are taken output by output before contracting with v, so outputs the step
        # does not touch contribute exactly 0 and no rounding from the rest of L; elements whose
        # cotangent is 0 contribute nothing, even where they are NaN (0 * nan is nan).
        v = center.cotangents[j].reshape(-1)
        dead = None if center.whole[j] else ~center.live[j].reshape(-1)
        work = self.scratch.take("work", tuple(plus.shape))
        other = self.scratch.take("other", tuple(plus.shape))
        up = _contracted(torch.sub(plus, c, out=work), v, dead)
        down = _contracted(torch.sub(c, minus, out=work), v, dead)
        both = _contracted(torch.sub(plus, minus, out=work), v, dead)
        shape = tuple(plus.shape)
        changed = torch.ne(plus, minus, out=self.scratch.take("changed", shape, torch.bool))
        changed |= torch.ne(plus, c, out=self.scratch.take("changed at c", shape, torch.bool))
        if dead is not None:
            changed &= ~dead
        changed &= usable[:, :, None]
        # Rounding counts every output this probe has ever moved, up to each step: an output
        # that stops changing at a small step has hit its resolution, not a zero derivative.
        touched = _running_or(changed)
        if not marks.fresh:
            touched = marks.touched[j][index] | touched
        marks.touched[j][index] = touched[-1]
        narrow = marks.narrow[j]
        if narrow is None:
            weight: float | torch.Tensor = center.weights[j]
        else:
            exact = exact_in_float32(plus) & exact_in_float32(minus)
            kept = narrow[index] & ~_running_or(usable[:, :, None] & ~exact)
            narrow[index] = kept[-1]
            weight = center.weight(j, kept)
        # weight * |v| * (|plus| + |c| + |minus|), where touched, in that order of operations.
        # |c| and |v| (one element's worth each) borrow other's first elements while it is free.
        head = other.view(-1)[: c.numel()]
        sizes_sum = torch.abs(plus, out=work).add_(torch.abs(c, out=head))
        sizes_sum.add_(torch.abs(minus, out=other))
        v_abs = torch.abs(v, out=head)
        if isinstance(weight, torch.Tensor):
            # Per element and step: (steps, sequences, elements), in float64 as weight * |v|.
            scale = torch.mul(weight, v_abs, out=self.scratch.take("scale", tuple(plus.shape)))
        else:
            scale = v_abs.mul_(weight)
        sizes_sum.mul_(scale)
        assumed = sizes_sum.masked_fill_(~touched, 0.0).sum(dim=-1)
        noisy = center.noisy[j] if center.noisy else None
        measured = None
        if noisy is not None:
            # noisy * touched, as touched's 0s and 1s times noisy (the same products), without
            # the full-size float copy of touched that mixing the dtypes would allocate.
            measured = other.copy_(touched).mul_(noisy.reshape(-1)).sum(dim=-1)
        # Summed over the outputs in their order, from 0.0, as the point-by-point sums were.
        self.up, self.down, self.both = self.up + up, self.down + down, self.both + both
        self.assumed = self.assumed + assumed
        if measured is not None:
            self.measured = self.measured + measured
        self.moved = self.moved | changed.any(dim=-1)


def _contracted(
    difference: torch.Tensor, v: torch.Tensor, dead: torch.Tensor | None
) -> torch.Tensor:
    """``sum(v * difference)`` over the last dimension, 0 where ``dead`` (``difference`` is a
    scratch buffer, overwritten)."""
    difference.mul_(v)
    if dead is not None:
        difference.masked_fill_(dead, 0.0)
    return difference.sum(dim=-1)


def _running_or(flags: torch.Tensor) -> torch.Tensor:
    """Along the first dimension: whether any entry so far is True."""
    return flags.cumsum(dim=0, dtype=torch.int32) > 0 if flags.shape[0] > 1 else flags


@dataclass
class _Trace:
    """One probe's running record: the noise of one evaluation its stairs of rounding show (see
    :func:`~gradcheck.oracles.noise.stair_noise`), and the first exception fn raised at one of
    its steps."""

    stairs: float = 0.0
    raised: str | None = None

    def explained(self, outcome: Outcome) -> Outcome:
        """``outcome``, with the exception recorded in its reason when it is undecided."""
        if outcome.reason is None or self.raised is None:
            return outcome
        return Outcome(reason=f"{outcome.reason}; {self.raised}")


def _with_noise(step: Quotients, noise: float) -> Quotients:
    """``step`` with its rounding at least that of ``noise`` per evaluation."""
    magnitude = rounding_magnitude(0.0, noise, FD_ROUNDING_PER_EVALUATION, FD_MEASURED_NOISE_SAFETY)
    floor = evaluation_rounding(magnitude, step.step, FD_ROUNDING_PER_EVALUATION)
    return step._replace(rounding=max(step.rounding, floor))
