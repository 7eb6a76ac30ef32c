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

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from gradcheck import arguments as args
from gradcheck import messages, validation
from gradcheck.arguments import Cotangents, Inputs
from gradcheck.composite import combined
from gradcheck.derivatives import gradient_function, gradient_oracle
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
from gradcheck.forward_subject import forward_projections
from gradcheck.judge import judge
from gradcheck.oracle_gradients import OracleGradient, oracle_gradient
from gradcheck.oracles import Estimate, FiniteDifference, Oracle, resolve_oracle
from gradcheck.oracles.forward import Forward
from gradcheck.oracles.symbolic import Symbolic
from gradcheck.output_blame import name_the_output
from gradcheck.preparation import (
    Prepared,
    apply_undecided,
    higher_order_floor,
    prepare,
    project,
)
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


MODES = ("reverse", "forward", "both")
"""What ``check_function(mode=...)`` puts under test: reverse mode (``v^T J``, backward),
forward mode (``J u``, the ``jvp``), or both."""

MAX_ORDER = 3
"""The highest ``order``: each order differentiates autograd's gradient once more, and every
level costs the whole check again on a function that runs backward inside."""


@dataclass(frozen=True)
class _Settings:
    """The arguments of one check_function call that every derivative it checks shares."""

    oracle: str | Oracle
    expr: Any
    atol: float | None
    rtol: float | None
    seed: int
    cotangents: Cotangents
    nondet_tol: float
    progress: Any
    order: int
    mode: str
    batched: bool


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
    order: int = 1,
    mode: str = "reverse",
    batched: bool = False,
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

    ``mode`` says what is under test: ``"reverse"`` (backward, ``v^T J``), ``"forward"``
    (forward-mode AD, ``J u`` for every probe ``u``: a custom Function's ``jvp``) or ``"both"``.
    ``order=2`` also checks the derivative of autograd's gradient (double backward, as
    torch.autograd.gradgradcheck: ``u^T H v``, judged against the oracle's derivative of the
    first-order gradient); ``order=3`` once more. A check of several derivatives returns one
    result with a part per derivative (``result.parts``), named as JAX's check_grads names them:
    ``VJP``, ``JVP``, ``VJP of VJP``, ``JVP of VJP``.

    Backward must also keep its contract, as torch.autograd.gradcheck checks it: each gradient
    has its input's dtype, shape and device, and an output whose gradient is undefined (None)
    counts as zeros; ``batched=True`` also checks backward under ``torch.func.vmap`` over several
    cotangents against one backward each (``is_grads_batched``). A broken contract fails the
    check with what differed.

    Complex inputs (complex64, complex128) are judged in PyTorch's convention: ``z.grad`` is
    ``dL/d(real) + i dL/d(imag)``, the conjugate Wirtinger derivative, checked along the real
    and the imaginary part of every element (``z.real[3]``, ``z.imag[3]``); a complex output is
    contracted with its cotangent as ``Re(sum(conj(v) * out))``, as ``out.backward(v)`` does.

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
    settings = _Settings(
        oracle=oracle,
        expr=expr,
        atol=atol,
        rtol=rtol,
        seed=seed,
        cotangents=cotangents,
        nondet_tol=validation.non_negative_or_none("nondet_tol", nondet_tol) or 0.0,
        progress=progress,
        order=_order(order),
        mode=validation.one_of(
            "mode", mode, MODES, "the derivative under test: backward, forward-mode AD, or both"
        ),
        batched=validation.flag("batched", batched),
    )
    if settings.mode != "reverse" and (oracle == "forward" or isinstance(oracle, Forward)):
        raise InvalidArgument(
            f"Got mode={mode!r} with oracle='forward': forward-mode AD cannot judge itself. "
            "Use oracle='finite_difference' (or 'sympy') to check forward mode."
        )
    if settings.order == 1 and settings.mode == "reverse":
        return _check_derivative(
            _Level(fn, inputs, oracle, expr, cotangents), settings, name, "reverse", ""
        )
    label = name or args.function_name(fn)
    parts: list[tuple[str, CheckResult]] = []
    level = _Level(fn, inputs, oracle, expr, settings.cotangents)
    subjects = ("forward", "reverse") if settings.mode == "both" else (settings.mode,)
    for order in range(1, settings.order + 1):
        titled = [
            (subject, ("JVP" if subject == "forward" else "VJP") + " of VJP" * (order - 1))
            for subject in subjects
        ]
        results = _check_level(level, settings, label, titled)
        parts += [(title, result) for (_, title), result in zip(titled, results)]
        if order < settings.order:
            level = _gradient_level(level, settings)
    return combined(parts, label, parts[0][1].reproduce, started)


@dataclass(frozen=True)
class _Level:
    """The function one order of the check differentiates, its inputs, its oracle and expr
    (the caller's at the first order; SymPy's derivative of the gradient above it), its
    cotangents (the caller's at the first order), and why its derivative may be zero
    (``hint``)."""

    fn: Callable[..., Any]
    inputs: Inputs
    oracle: str | Oracle
    expr: Any
    cotangents: Cotangents = None
    hint: Callable[[], str] = lambda: ""
    higher_order: bool = False
    """fn is autograd's gradient of the level below."""


def _order(order: object) -> int:
    """The derivative order: an integer from 1 to :data:`MAX_ORDER`."""
    value = validation.positive_int("order", order, "2")
    if value > MAX_ORDER:
        raise InvalidArgument(
            f"Got order={value}, but check_function checks derivatives up to order {MAX_ORDER} "
            "(each order runs the whole check again on a function with backward inside). "
            f"Pass order=1, 2 or {MAX_ORDER}."
        )
    return value


def _gradient_level(level: _Level, settings: _Settings) -> _Level:
    """The next order's level: autograd's gradient of ``level.fn`` (with the cotangent the
    check of ``level`` used), at the same tensors, differentiated at the same positions."""
    arguments = validation.tensor_tuple(level.inputs, complex_ok=True)
    positions = args.differentiable_positions(arguments)
    names = args.argument_names(level.fn, len(arguments))
    gradient = gradient_function(
        level.fn, arguments, positions, names, settings.seed, level.cotangents
    )
    marked = tuple(
        a.detach().requires_grad_(True) if i in positions else a.detach()
        for i, a in enumerate(arguments)
    )
    judge_oracle = resolve_oracle(level.oracle, level.expr)
    if not isinstance(judge_oracle, Symbolic):
        return _Level(gradient.fn, marked, level.oracle, None, None, gradient.hint, True)
    names = judge_oracle.input_names(names)
    exact, values = gradient_oracle(judge_oracle, gradient, arguments, positions, names)
    return _Level(gradient.fn, marked + values, exact, None, None, gradient.hint, True)


def _check_derivative(
    level: _Level, settings: _Settings, name: str | None, subject: str, title: str
) -> CheckResult:
    """One derivative of one function judged against the oracle: reverse mode's ``v^T J`` or
    forward mode's ``J u``, along every probe (``title`` names it in a check of several)."""
    return _check_level(level, settings, name, [(subject, title)])[0]


def _check_level(
    level: _Level, settings: _Settings, name: str | None, subjects: list[tuple[str, str]]
) -> list[CheckResult]:
    """Each ``(subject, title)`` of one level judged against the oracle, from one set-up and
    one oracle estimate (forward and reverse mode are compared with the same directional
    derivatives)."""
    started = time.perf_counter()
    setup = prepare(
        level.fn,
        level.inputs,
        level.oracle,
        level.expr,
        settings.seed,
        name,
        level.cotangents,
        batched=settings.batched,
        higher_order=level.higher_order,
    )
    estimated: list[Estimate] = []

    def estimate() -> Estimate:
        if not estimated:
            estimated.append(_estimate(setup, progress_callback(settings.progress, setup.label)))
        return estimated[0]

    results = []
    for subject, title in subjects:
        results.append(_judge_subject(setup, level, settings, subject, title, estimate, started))
        started = time.perf_counter()
    return results


def _judge_subject(
    setup: Prepared,
    level: _Level,
    settings: _Settings,
    subject: str,
    title: str,
    estimate: Callable[[], Estimate],
    started: float,
) -> CheckResult:
    """Reverse mode's ``v^T J`` or forward mode's ``J u`` on ``setup``, judged against the
    oracle's ``estimate()``."""
    tolerance = resolve_tolerance(
        setup.dtype, setup.oracle.name, atol=settings.atol, rtol=settings.rtol
    )
    identity = Identity(
        name=setup.label,
        dtype=setup.shown_dtype,
        device=str(setup.device),
        mode="elementwise" if setup.probes.is_basis else "directional",
        seed=settings.seed,
        reproduce=_reproduce_call(setup, settings),
        started=started,
    )
    elements = _elements(setup, identity, subject, title)
    forward_unavailable = None
    floor = higher_order_floor(setup) if level.higher_order else 0.0
    if subject == "forward":
        measured, noise, forward_unavailable = forward_projections(
            setup.problem.fn, setup.arguments, setup.problem, setup.probes, settings.seed, floor
        )
    else:
        measured, noise = project(setup.gradient, setup.probes, floor)
    unjudged = Judged(measured, Estimate.empty(0), (), tolerance, setup.oracle.name)
    side = setup.autograd
    repeated = nondeterminism(side.gradient, side.repeated, settings.nondet_tol)
    if repeated is not None and subject == "reverse":
        return unjudged_result(FAILED, repeated, unjudged, elements, identity)
    if side.contract and subject == "reverse":
        broken = messages.broken_contract(side.contract)
        return unjudged_result(FAILED, broken, unjudged, elements, identity)
    if setup.problem.size == 0:
        return unjudged_result(
            SKIPPED, NOTHING_TO_CHECK, unjudged, elements, identity, left_out=setup.left_out
        )
    unavailable = forward_unavailable or (side.unavailable if subject == "reverse" else None)
    if unavailable is not None:
        measured, noise = [math.nan] * setup.probes.count, [0.0] * setup.probes.count
        judged_estimate = Estimate.undecided(setup.probes.count, unavailable)
    else:
        judged_estimate = estimate()
    verdicts = judge(measured, noise, judged_estimate, tolerance)
    judged = Judged(measured, judged_estimate, verdicts, tolerance, setup.oracle.name)
    result = element_result(judged, elements, identity, left_out=setup.left_out)
    result = name_the_output(result, setup)
    hint = level.hint()
    if result.status == FAILED and hint:
        lines = result.message.split("\n")
        result = dataclasses.replace(result, message="\n".join([*lines[:-1], hint, lines[-1]]))
    return result


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
    order: int = 1,
    mode: str = "reverse",
    batched: bool = False,
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
        order=order,
        mode=mode,
        batched=batched,
    ).raise_for_failure()


_MISMATCH = {"VJP": "Gradient mismatch", "JVP": "Forward-mode mismatch (JVP)"}


def _elements(setup: Prepared, identity: Identity, subject: str, title: str) -> Elements:
    """How check_function names an element (an input entry or a random direction) and words
    the derivative under test (``title``: ``"VJP of VJP"`` in a check of several)."""
    problem, probes = setup.problem, setup.probes
    vector_output = any(v is not None and v.numel() > 1 for v in problem.cotangents)
    details = f"{identity.dtype}, {identity.device}"
    checked = messages.subject("check_function", setup.label, details)
    if title:
        checked += f" [{title}]"

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
        if subject == "forward":
            output = "v^T (d out / d u)" if vector_output else "d out / d u"
        else:
            output = "v^T d out" if vector_output else "d out"
        name, _, direction, _ = locate(p) if p is not None else (None, None, None, None)
        if subject == "forward":
            wrt = f", u = d {name}" if name else ""
        elif name:
            wrt = f" / d {name}"
        else:
            wrt = " along random directions" if direction is not None else ""
        return f"{kind}: {checked}, {output}{wrt}"

    mismatch = _MISMATCH.get(title or "VJP", f"Higher-order mismatch ({title})")
    return Elements(
        locate=locate,
        where=where,
        headline=headline,
        matched=f"Gradients match: {checked} against {setup.oracle.name}",
        measured_label="forward mode" if subject == "forward" else "autograd",
        mismatch=mismatch,
    )


def _reproduce_call(setup: Prepared, settings: _Settings) -> str:
    """The call that re-runs the whole check (every order and mode it was asked for)."""
    names = setup.problem.names
    arguments = names[0] if len(names) == 1 else f"({', '.join(names)})"
    oracle = settings.oracle
    shown = setup.oracle.describe() if isinstance(oracle, Oracle) else repr(oracle)
    extras = [f"oracle={shown}"]
    if isinstance(oracle, str) and oracle == "sympy":
        extras.append(f"expr={settings.expr!r}")
    extras += [
        f"{k}={v!r}" for k, v in (("atol", settings.atol), ("rtol", settings.rtol)) if v is not None
    ]
    if settings.cotangents is not None:
        extras.append("cotangents=v")
    if settings.nondet_tol:
        extras.append(f"nondet_tol={settings.nondet_tol!r}")
    if settings.order != 1:
        extras.append(f"order={settings.order}")
    if settings.mode != "reverse":
        extras.append(f"mode={settings.mode!r}")
    if settings.batched:
        extras.append("batched=True")
    extras.append(f"seed={settings.seed}")
    label = setup.label
    function = label if label.isidentifier() or ("." in label and "<" not in label) else "fn"
    return f"gradcheck.check_function({function}, {arguments}, {', '.join(extras)})"
