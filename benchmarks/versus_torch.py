"""check_function against ``torch.autograd.gradcheck`` in slow and fast mode on the same sample,
in one process, in CPU seconds: the three sides of ``gradcheck ops``
(:func:`gradcheck.ops.sides.run_side`, each inside its CPU-time budget) on OpInfo samples chosen by
a recorded seed, and on small hand-written functions.

Each side runs once untimed (its verdict, and how many times it called the function: the warm-up
also pays each op's first-call costs, which would otherwise land on whichever side ran first),
then repeats until its timed runs add up to :data:`MIN_TIMED_S` (at most :data:`MAX_REPEATS`
runs); its time is the CPU seconds of the timed runs over their number. CPU time, not wall time:
the machine may be shared, and the checks run on one thread (``torch.set_num_threads(1)``, as
``gradcheck ops``'s workers do). A side that errs or runs out of its budget is not repeated.
A sample more than :data:`~gradcheck.report.speed.OVER` times slower than slow mode is timed a
second time, all three sides, and the timing with the lower ratio kept (``other_ratio_slow``
records the other's): on a shared machine a descheduled millisecond can make one timing of a
millisecond check several times too long (measured: three samples at 3.3-4.3x in a run over
every sample took 0.54-0.95x when timed again alone).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import random
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from gradcheck.ops.samples import Case, preserved_rng
from gradcheck.ops.sides import ERROR, TIMEOUT, run_side
from gradcheck.oracles.base import shares_a_larger_storage
from gradcheck.oracles.batch_eval import refusal
from gradcheck.report.speed import OVER, row_ratio

SEED = 0
"""The seed of the OpInfo selection and of every check (``GRADCHECK_BENCH_OPS_SEED`` overrides
the selection's)."""
QUICK_SAMPLES = 40
"""OpInfo samples in the quick run (``GRADCHECK_BENCH_OPS=all`` checks every sample,
``GRADCHECK_BENCH_OPS=N`` N of them)."""
SAMPLES_PER_OP = 3
"""The samples of each op the selection draws from: ``gradcheck ops``'s default."""
BUDGET_S = 20.0
"""CPU seconds of each check of a sample, as ``gradcheck ops --timeout-s`` defaults to."""
MIN_TIMED_S, MAX_REPEATS = 0.05, 50
SIDES = (("ours", "ours"), ("slow", "torch_slow"), ("fast", "torch_fast"))
"""A row's key prefix for each of :data:`gradcheck.ops.sides.SIDES`."""


def opinfo_request(environ: dict[str, str] | None = None) -> tuple[int | None, int]:
    """(how many OpInfo samples, None for every one; the selection's seed) from
    ``GRADCHECK_BENCH_OPS`` (unset: :data:`QUICK_SAMPLES`; ``all``; a number) and
    ``GRADCHECK_BENCH_OPS_SEED``."""
    environ = dict(os.environ if environ is None else environ)
    wanted = environ.get("GRADCHECK_BENCH_OPS", "").strip().lower()
    seed = int(environ.get("GRADCHECK_BENCH_OPS_SEED", SEED))
    if wanted == "all":
        return None, seed
    return (int(wanted) if wanted else QUICK_SAMPLES), seed


def _counted(fn: Callable[..., Any], calls: list[int]) -> Callable[..., Any]:
    """``fn`` with each call counted in ``calls[0]``."""

    @functools.wraps(fn)
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return fn(*args, **kwargs)

    return counted


_FALLBACK = re.compile(r"batching rule for ([\w.:]+)")


def batching_facts(case: Case) -> dict[str, Any]:
    """What decides whether check_function can batch ``case``'s points with vmap, found apart
    from the timing: ``views`` (an input is a view into a larger storage, whose layout fn may
    read: such problems always go point by point) and ``vmap_loops`` (the ops vmap has no
    batching rule for, so it runs them slice by slice inside a batch; from the warnings of one
    vmapped call on two copies of the inputs, empty when there are none or fn raises)."""
    views = any(
        t.layout == torch.strided and shares_a_larger_storage(t) for t in case.inputs
    )  # sparse inputs are checked through their stored values, never as views
    loops: list[str] = []
    # fn (or stacking a sparse input) raising under vmap is suppressed: the engine's refusal
    # says why.
    with (
        warnings.catch_warnings(record=True) as caught,
        torch.no_grad(),
        preserved_rng(),
        contextlib.suppress(Exception),
    ):
        warnings.simplefilter("always")
        stacked = [torch.stack([t.detach(), t.detach()]) for t in case.inputs]
        torch.func.vmap(case.fn, randomness="same")(*stacked)
    for warning in caught:
        found = _FALLBACK.search(str(warning.message))
        name = found.group(1).rstrip(".") if found else ""
        if name and name not in loops:
            loops.append(name)
    return {"views": views, "vmap_loops": ", ".join(loops)}


def time_side(
    side: str,
    case: Case,
    nondet_tol: float = 0.0,
    budget_s: float = BUDGET_S,
    order: int = 1,
) -> dict:
    """One of :data:`gradcheck.ops.sides.SIDES` on ``case`` (at derivative ``order``: 2 is
    check_function(order=2) against gradgradcheck): ``status``, ``message``, ``calls`` (of
    ``case.fn``, in the untimed run), ``repeats`` and ``s`` (CPU seconds per timed run; for an
    error or a timeout, the untimed run's); for check_function also ``vmap_refused``, why vmap
    was refused for fn (:func:`gradcheck.oracles.batch_eval.refusal`; empty when it was not)
    and :func:`batching_facts`."""
    calls = [0]
    counted = dataclasses.replace(case, fn=_counted(case.fn, calls))
    started = time.process_time()
    with preserved_rng():
        outcome = run_side(side, counted, SEED, nondet_tol, budget_s, order)
    first = time.process_time() - started
    found = {"status": outcome["status"], "message": outcome.get("message", ""), "calls": calls[0]}
    if side == "ours":  # why check_function's points went one by one, or batches were slow
        found["vmap_refused"] = refusal(counted.fn) or ""
        found.update(batching_facts(case))
    if outcome["status"] in (ERROR, TIMEOUT):
        return {**found, "s": first, "repeats": 0}
    repeats = min(MAX_REPEATS, max(1, math.ceil(MIN_TIMED_S / max(outcome["time_s"], 1e-6))))
    started = time.process_time()
    for _ in range(repeats):
        with preserved_rng():
            run_side(side, case, SEED, nondet_tol, budget_s, order)
    return {**found, "s": (time.process_time() - started) / repeats, "repeats": repeats}


def sizes_text(shapes: tuple[tuple[int, ...], ...]) -> str:
    """``(5, 5), (5,)``: the differentiated tensors' shapes."""
    return ", ".join(str(tuple(shape)) for shape in shapes) or "()"


def time_case(
    name: str, case: Case, nondet_tol: float = 0.0, order: int = 1, **facts: Any
) -> dict[str, Any]:
    """The row of one sample: ``name``, its sizes and elements, and for each side its CPU seconds
    (``ours_s``, ``slow_s``, ``fast_s``), status, message, calls and repeats, at derivative
    ``order``; plus ``facts``. Over :data:`OVER` times slow mode's time, the sample is timed
    again and the lower ratio's timing kept, the other's ratio as ``other_ratio_slow``."""
    row = _timed_once(name, case, nondet_tol, order, facts)
    ratio = row_ratio(row, "slow")
    if ratio is None or ratio <= OVER:
        return row
    again = _timed_once(name, case, nondet_tol, order, facts)
    second = row_ratio(again, "slow")
    kept, other = (again, ratio) if second is not None and second < ratio else (row, second)
    return {**kept, "other_ratio_slow": other}


def _timed_once(
    name: str, case: Case, nondet_tol: float, order: int, facts: dict[str, Any]
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": name,
        **facts,
        "sizes": sizes_text(case.shapes),
        "numel": sum(math.prod(shape) for shape in case.shapes),
    }
    for prefix, side in SIDES:
        for key, value in time_side(side, case, nondet_tol, order=order).items():
            row[f"{prefix}_{key}"] = value
    return row


@dataclasses.dataclass(frozen=True)
class Drawn:
    """An OpInfo sample the selection drew: its op's key, sample index, case and nondet_tol."""

    key: str
    index: int
    case: Case
    nondet_tol: float


def _samples_of(selected: Any) -> list[Any]:
    from gradcheck.ops.samples import first_samples

    try:
        return first_samples(selected.op, "cpu", torch.float64, SAMPLES_PER_OP)
    except Exception:  # an op whose sample generator fails here has nothing to time
        return []


def draw_opinfo(
    count: int | None, seed: int, database: Sequence[Any] | None = None
) -> Iterator[Drawn]:
    """OpInfo samples of torch's op_db (float64, CPU), as ``gradcheck ops`` builds them, among
    the differentiable ops that torch's own test_fn_grad does not skip: for ``count`` None, the
    first :data:`SAMPLES_PER_OP` samples of every op in database order; else ``count`` samples
    of distinct ops, the ops in the order ``random.Random(seed)`` shuffles them, each one's
    sample drawn by the same generator among its first :data:`SAMPLES_PER_OP` (an op without
    samples is passed over). ``database`` replaces torch's op_db (a list of OpInfo records)."""
    from gradcheck.ops.database import op_database, select
    from gradcheck.ops.samples import case_of

    records = op_database() if database is None else database
    ops = [s for s in select(records, None, "cpu", torch.float64) if not s.skip]
    rng = random.Random(seed)
    order = ops if count is None else rng.sample(ops, len(ops))
    drawn = 0
    for selected in order:
        if count is not None and drawn == count:
            return
        samples = _samples_of(selected)
        if not samples:
            continue
        indices = range(len(samples)) if count is None else [rng.randrange(SAMPLES_PER_OP)]
        nondet_tol = float(getattr(selected.op, "gradcheck_nondet_tol", 0.0) or 0.0)
        for index in indices:
            index = min(index, len(samples) - 1)
            try:
                case = case_of(selected.op, samples[index])
            except Exception:
                continue
            drawn += 1
            yield Drawn(selected.key, index, case, nondet_tol)


class Cube(torch.autograd.Function):
    """``x ** 3`` with a hand-written backward: a custom autograd.Function."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        """The cube, saving ``x``."""
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        """``3 x**2 * grad``."""
        (x,) = ctx.saved_tensors
        return 3 * x**2 * grad


def _inputs(*shapes: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(SEED)
    return tuple(
        (torch.rand(shape, generator=generator, dtype=torch.float64) + 0.5).requires_grad_()
        for shape in shapes
    )


HAND_WRITTEN: tuple[tuple[str, Callable[..., torch.Tensor], tuple[tuple[int, ...], ...]], ...] = (
    ("sin(x) * x", lambda x: torch.sin(x) * x, ((20,),)),
    ("exp(x) / (1 + y)", lambda x, y: torch.exp(x) / (1 + y), ((4, 5), (4, 5))),
    ("(x ** 2).sum()", lambda x: (x**2).sum(), ((20,),)),
    ("logsumexp(x, dim=1)", lambda x: torch.logsumexp(x, dim=1), ((4, 5),)),
    ("softmax(x, dim=-1)", lambda x: torch.softmax(x, dim=-1), ((4, 5),)),
    ("a @ b", lambda a, b: a @ b, ((4, 5), (5, 3))),
    ("Cube.apply(x) (autograd.Function)", Cube.apply, ((10,),)),
)
"""(name, function, input shapes): elementwise, reductions, a small matmul, a custom Function."""


def hand_written_cases() -> list[tuple[str, Case]]:
    """:data:`HAND_WRITTEN` as cases on seeded float64 inputs in [0.5, 1.5)."""
    cases = []
    for name, fn, shapes in HAND_WRITTEN:
        inputs = _inputs(*shapes)
        cases.append((name, Case(fn, inputs, tuple(tuple(t.shape) for t in inputs), name)))
    return cases
