"""``check_function`` and ``assert_gradients_correct``: autograd against one oracle.

The check works on copies of the caller's tensors. It picks the differentiable inputs (those with
``requires_grad=True``; if none has it, every floating-point input), runs ``fn`` once under
autograd, and contracts the outputs with seeded random cotangents ``v`` (1 for a scalar output)
so that the gradient checked is the full vector-Jacobian product ``v^T J``
(:mod:`gradcheck.preparation`). The oracle then estimates the same derivatives in float64 along
every element (or along seeded random directions for large inputs), :mod:`gradcheck.judge`
judges each element, and :mod:`gradcheck.element_results` writes the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from gradcheck import arguments as args
from gradcheck import messages, validation
from gradcheck.arguments import Cotangents, Inputs
from gradcheck.element_results import (
    NOTHING_TO_CHECK,
    Elements,
    Identity,
    Judged,
    Location,
    element_result,
    nondeterminism,
    unjudged_result,
)
from gradcheck.errors import InvalidArgument
from gradcheck.judge import judge
from gradcheck.oracle_gradients import OracleGradient, oracle_gradient
from gradcheck.oracles import Estimate, FiniteDifference, Oracle
from gradcheck.output_blame import name_the_output
from gradcheck.preparation import Prepared, apply_undecided, prepare, project
from gradcheck.progress import Progress, progress_callback
from gradcheck.recording import recorded
from gradcheck.results import CheckResult
from gradcheck.status import FAILED, SKIPPED
from gradcheck.tolerances import resolve_tolerance
from gradcheck.validation import MAX_SEED

__all__ = [
    "MAX_SEED",
    "Cotangents",
    "Inputs",
    "OracleGradient",
    "assert_gradients_correct",
    "check_function",
    "oracle_gradient",
]


@recorded
def check_function(
    fn: Callable[..., Any],
    inputs: Inputs,
    *more_inputs: torch.Tensor,
    oracle: str | Oracle = "finite_difference",
    expr: Any = None,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
    name: str | None = None,
    cotangents: Cotangents = None,
    nondet_tol: float = 0.0,
    progress: Any = None,
) -> CheckResult:
    """Check autograd's gradient of ``fn`` at ``inputs`` against an independent oracle.

    ``fn`` takes the tensors of ``inputs`` (one tensor or a sequence) positionally and returns a
    tensor or a tuple of tensors. ``oracle`` is ``"finite_difference"`` (Richardson-extrapolated
    central differences), ``"sympy"`` (exact derivatives of ``expr``, a SymPy expression or string
    over the input names) or ``"forward"`` (forward-mode AD), or an oracle object such as
    ``gradcheck.FiniteDifference(directions=16)``. ``atol``/``rtol`` override the dtype/oracle
    tolerance table; ``seed`` fixes the cotangents, random directions and any randomness inside
    ``fn``. ``cotangents`` is the ``v`` of ``v^T J``: a tensor shaped like the output (or one per
    output, None for non-floating outputs); by default a scalar output gets 1 and any other output
    seeded N(0, 1) values, so ``check_function(f, x, cotangents=v)`` judges ``f(x).backward(v)``.
    Backward runs twice with the same cotangent; the two gradients must agree within
    ``nondet_tol`` (0: bitwise, as torch.autograd.gradcheck's default).

    Only what autograd differentiates is judged: outputs that do not require grad and output
    elements that are NaN/Inf at the input are left out (``result.left_out``), and the input
    elements whose gradient flows through them are inconclusive. An fn whose two evaluations
    at the same point differ is inconclusive, never passed. Empty inputs have nothing to check:
    with nothing at all to check the result is ``"skipped"``. Returns a :class:`CheckResult`;
    the caller's tensors, RNG state and grad mode are left as they were. ``cotangents=(v, None)``
    leaves the second output out (listed in ``result.left_out``); a failure of an fn with several
    judged outputs names the output the worst element's mismatch comes from. Checks may run from
    several threads at once (their RNG sections take turns). ``progress`` shows how far the
    finite-difference oracle is: None (default) a bar on stderr once a check has run 2 s and
    stderr is a terminal, True a bar always, False nothing, or a callable taking
    ``(probes done, probes in all)``.
    """
    args.one_inputs_argument("check_function", fn, more_inputs)
    started = time.perf_counter()
    allowed_nondeterminism = validation.non_negative_or_none("nondet_tol", nondet_tol) or 0.0
    setup = prepare(fn, inputs, oracle, expr, seed, name, cotangents)
    shown = progress_callback(progress, setup.label)
    tolerance = resolve_tolerance(setup.dtype, setup.oracle.name, atol=atol, rtol=rtol)
    autograd, noise = project(setup.gradient, setup.probes)
    identity = Identity(
        name=setup.label,
        dtype=setup.shown_dtype,
        device=str(setup.device),
        mode="elementwise" if setup.probes.is_basis else "directional",
        seed=seed,
        reproduce=_reproduce_call(
            setup, oracle, atol, rtol, seed, cotangents is not None, allowed_nondeterminism
        ),
        started=started,
    )
    elements = _elements(setup, identity)
    unjudged = Judged(autograd, Estimate.empty(0), (), tolerance, setup.oracle.name)
    side = setup.autograd
    repeated = nondeterminism(side.gradient, side.repeated, allowed_nondeterminism)
    if repeated is not None:
        return unjudged_result(FAILED, repeated, unjudged, elements, identity)
    if setup.problem.size == 0:
        return unjudged_result(
            SKIPPED, NOTHING_TO_CHECK, unjudged, elements, identity, left_out=setup.left_out
        )
    estimate = _estimate(setup, shown)
    verdicts = judge(autograd, noise, estimate, tolerance)
    judged = Judged(autograd, estimate, verdicts, tolerance, setup.oracle.name)
    result = element_result(judged, elements, identity, left_out=setup.left_out)
    return name_the_output(result, setup)


def _estimate(setup: Prepared, progress: Progress | None = None) -> Estimate:
    """The oracle's estimate of every probe, or every probe undecided with the reason: fn is
    impure, or the oracle itself failed (never a traceback from inside an oracle)."""
    if setup.impure is not None:
        return Estimate.undecided(setup.probes.count, setup.impure)
    try:
        with torch.inference_mode(False), torch.no_grad():
            if isinstance(setup.oracle, FiniteDifference):
                estimate = setup.oracle.estimate(setup.problem, setup.probes, progress)
            else:
                estimate = setup.oracle.estimate(setup.problem, setup.probes)
    except InvalidArgument:
        raise
    except Exception as error:
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        reason = (
            f"the {setup.oracle.name} oracle failed while evaluating fn near the input "
            f"({type(error).__name__}: {first_line})"
        )
        return Estimate.undecided(setup.probes.count, reason)
    apply_undecided(estimate, setup.undecided)
    return estimate


@recorded
def assert_gradients_correct(
    fn: Callable[..., Any],
    inputs: Inputs,
    *more_inputs: torch.Tensor,
    oracle: str | Oracle = "finite_difference",
    expr: Any = None,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
    name: str | None = None,
    cotangents: Cotangents = None,
    nondet_tol: float = 0.0,
    progress: Any = None,
) -> CheckResult:
    """Like :func:`check_function`, but raise on failure: for use inside anyone's tests.

    Raises :class:`gradcheck.GradientMismatch` (an ``AssertionError``) when an element is outside
    its tolerance and :class:`gradcheck.InconclusiveCheck` when the oracle decided nothing or
    there was nothing to check (empty inputs, no output that requires grad); returns the passing
    :class:`CheckResult` otherwise.
    """
    args.one_inputs_argument("assert_gradients_correct", fn, more_inputs)
    return check_function(
        fn,
        inputs,
        oracle=oracle,
        expr=expr,
        atol=atol,
        rtol=rtol,
        seed=seed,
        name=name,
        cotangents=cotangents,
        nondet_tol=nondet_tol,
        progress=progress,
    ).raise_for_failure()


def _elements(setup: Prepared, identity: Identity) -> Elements:
    """How check_function names an element (an input entry or a random direction)."""
    problem, probes = setup.problem, setup.probes
    vector_output = any(v is not None and v.numel() > 1 for v in problem.cotangents)
    details = f"{identity.dtype}, {identity.device}"

    def locate(p: int) -> Location:
        if not probes.is_basis:
            return None, None, p, None
        for spec in problem.specs:
            if p < spec.offset + spec.numel:
                name, index = spec.element(p - spec.offset)
                return name, index, None, float(problem.point[p])
        raise IndexError(p)

    def where(p: int) -> str:
        name, index, direction, _ = locate(p)
        if direction is not None:
            return f"direction {direction} of {probes.count} (seed {problem.seed})"
        inside = ", ".join(map(str, index or ()))
        return f"{name}[{inside}]" if inside else str(name)

    def headline(kind: str, p: int | None) -> str:
        output = "v^T d out" if vector_output else "d out"
        name, _, direction, _ = locate(p) if p is not None else (None, None, None, None)
        if name:
            wrt = f" / d {name}"
        else:
            wrt = " along random directions" if direction is not None else ""
        return f"{kind}: {messages.subject('check_function', setup.label, details)}, {output}{wrt}"

    return Elements(
        locate=locate,
        where=where,
        headline=headline,
        matched=f"Gradients match: {messages.subject('check_function', setup.label, details)} "
        f"against {setup.oracle.name}",
    )


def _reproduce_call(
    setup: Prepared,
    oracle: object,
    atol: float | None,
    rtol: float | None,
    seed: int,
    given_cotangents: bool,
    nondet_tol: float = 0.0,
) -> str:
    names = setup.problem.names
    arguments = names[0] if len(names) == 1 else f"({', '.join(names)})"
    shown = setup.oracle.describe() if isinstance(oracle, Oracle) else repr(oracle)
    extras = [f"oracle={shown}"]
    if isinstance(oracle, str) and oracle == "sympy":
        extras.append(f"expr={getattr(setup.oracle, 'expr', None)!r}")
    extras += [f"{k}={v!r}" for k, v in (("atol", atol), ("rtol", rtol)) if v is not None]
    if given_cotangents:
        extras.append("cotangents=v")
    if nondet_tol:
        extras.append(f"nondet_tol={nondet_tol!r}")
    extras.append(f"seed={seed}")
    label = setup.label
    function = label if label.isidentifier() or ("." in label and "<" not in label) else "fn"
    return f"gradcheck.check_function({function}, {arguments}, {', '.join(extras)})"
