"""``check_function`` and ``assert_gradients_correct``: autograd against one oracle.

The check works on copies of the caller's tensors. It picks the differentiable inputs (those with
``requires_grad=True``; if none has it, every floating-point input), runs ``fn`` once under
autograd, and contracts the outputs with seeded random cotangents ``v`` (1 for a scalar output)
so that the gradient checked is the full vector-Jacobian product ``v^T J``. The oracle then
estimates the same derivatives in float64 along every element (or along seeded random directions
for large inputs), and :mod:`gradcheck.compare` judges each element.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gradcheck.compare import (
    KINK,
    UNDECIDED,
    Verdict,
    failure_text,
    format_number,
    judge,
    summarize,
)
from gradcheck.errors import InvalidArgument
from gradcheck.oracles import Oracle, Probes, Problem, resolve_oracle
from gradcheck.oracles.base import EPS64, InputSpec, frozen_rng
from gradcheck.recording import recorded
from gradcheck.results import FAILED, INCONCLUSIVE, PASSED, CheckResult, ElementReport, Note
from gradcheck.tolerances import Tolerance, resolve_tolerance

MAX_SEED = 2**63 - 2  # seed + 1 seeds the random directions

Inputs = torch.Tensor | Sequence[torch.Tensor]
Cotangents = torch.Tensor | Sequence[torch.Tensor | None] | None


@recorded
def check_function(
    fn: Callable[..., Any],
    inputs: Inputs,
    *,
    oracle: str | Oracle = "finite_difference",
    expr: Any = None,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
    name: str | None = None,
    cotangents: Cotangents = None,
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
    Returns a :class:`CheckResult`; the caller's tensors, RNG state and grad mode are
    left as they were.
    """
    started = time.perf_counter()
    setup = _prepare(fn, inputs, oracle, expr, seed, name, cotangents)
    tolerance = resolve_tolerance(setup.dtype, setup.oracle.name, atol=atol, rtol=rtol)
    autograd, noise = _project(setup.gradient, setup.probes)
    with torch.inference_mode(False), torch.no_grad():
        estimate = setup.oracle.estimate(setup.problem, setup.probes)
    verdicts = judge(autograd, noise, estimate, tolerance)

    context = _Context(
        label=setup.label,
        oracle=setup.oracle,
        problem=setup.problem,
        probes=setup.probes,
        dtype=str(setup.dtype).removeprefix("torch."),
        device=str(setup.device),
        vector_output=any(v is not None and v.numel() > 1 for v in setup.problem.cotangents),
        reproduce=_reproduce_line(
            setup.label,
            setup.problem.names,
            setup.positions,
            oracle,
            setup.oracle,
            atol,
            rtol,
            seed,
            given_cotangents=cotangents is not None,
        ),
    )
    return context.result(autograd, estimate, verdicts, tolerance, seed, started)


@dataclass(frozen=True)
class OracleGradient:
    """An oracle's gradient ``v^T J`` of ``fn``, one float64 tensor per differentiable input.

    ``errors`` are the oracle's error estimates; ``lower``/``upper`` bound the valid subgradients
    where an element sits on a kink (NaN elsewhere); ``undecided`` is True where the oracle could
    not decide (its value is NaN). ``names`` are the inputs' names, ``positions`` their indices in
    ``inputs``.
    """

    oracle: str
    names: tuple[str, ...]
    positions: tuple[int, ...]
    values: tuple[torch.Tensor, ...]
    errors: tuple[torch.Tensor, ...]
    lower: tuple[torch.Tensor, ...]
    upper: tuple[torch.Tensor, ...]
    undecided: tuple[torch.Tensor, ...]

    def __getitem__(self, name: str) -> torch.Tensor:
        """The gradient with respect to the input called ``name``."""
        if name not in self.names:
            raise InvalidArgument(
                f"Got name={name!r}, but the differentiable inputs are {list(self.names)}."
            )
        return self.values[self.names.index(name)]


def oracle_gradient(
    fn: Callable[..., Any],
    inputs: Inputs,
    *,
    oracle: str | Oracle = "finite_difference",
    expr: Any = None,
    cotangents: Cotangents = None,
    seed: int = 0,
) -> OracleGradient:
    """The oracle's own gradient of ``fn`` at ``inputs`` (no autograd involved in the answer).

    Takes the same ``fn``, ``inputs``, ``oracle``, ``expr``, ``cotangents`` and ``seed`` as
    :func:`check_function` and returns, per element of every differentiable input, the oracle's
    ``v^T J`` with its error estimate: the number to compare a ``.grad`` against.
    """
    setup = _prepare(fn, inputs, oracle, expr, seed, None, cotangents, basis=True)
    with torch.inference_mode(False), torch.no_grad():
        estimate = setup.oracle.estimate(setup.problem, setup.probes)
    columns: dict[str, list[Any]] = {"values": [], "errors": [], "lower": [], "upper": []}
    undecided = []
    for spec in setup.problem.specs:
        span = slice(spec.offset, spec.offset + spec.numel)
        for key, numbers in (
            ("values", estimate.values),
            ("errors", estimate.errors),
            ("lower", estimate.lower),
            ("upper", estimate.upper),
        ):
            chunk = [math.nan if v is None else v for v in numbers[span]]
            columns[key].append(torch.tensor(chunk, dtype=torch.float64).view(spec.shape))
        reasons = [r is not None for r in estimate.reasons[span]]
        undecided.append(torch.tensor(reasons, dtype=torch.bool).view(spec.shape))
    return OracleGradient(
        oracle=setup.oracle.name,
        names=tuple(spec.name for spec in setup.problem.specs),
        positions=tuple(spec.position for spec in setup.problem.specs),
        values=tuple(columns["values"]),
        errors=tuple(columns["errors"]),
        lower=tuple(columns["lower"]),
        upper=tuple(columns["upper"]),
        undecided=tuple(undecided),
    )


@dataclass(frozen=True)
class _Setup:
    oracle: Oracle
    label: str
    dtype: torch.dtype
    device: torch.device
    positions: list[int]
    gradient: torch.Tensor
    problem: Problem
    probes: Probes


def _prepare(
    fn: Callable[..., Any],
    inputs: Inputs,
    oracle: str | Oracle,
    expr: Any,
    seed: int,
    name: str | None,
    cotangents: Cotangents,
    *,
    basis: bool = False,
) -> _Setup:
    """Validate the arguments, run autograd once and build the oracle's problem."""
    judge_oracle = resolve_oracle(oracle, expr)
    if not callable(fn):
        raise InvalidArgument(
            f"Got fn={_short_repr(fn)}, but fn must be callable. Pass the function itself, "
            "for example check_function(torch.sin, x), not the result of calling it."
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InvalidArgument(
            f"Got seed={seed!r}, but seed must be an integer in [0, {MAX_SEED}] (torch "
            "generators take 64-bit seeds). Pass a small integer such as seed=0."
        )
    if name is not None and not isinstance(name, str):
        raise InvalidArgument(
            f"Got name={name!r}, but name must be a string or None (None uses fn's own name)."
        )
    arguments = _as_tensor_tuple(inputs)
    positions = _differentiable_positions(arguments)
    dtype = _least_precise(arguments[i].dtype for i in positions)
    device = arguments[positions[0]].device
    names = judge_oracle.input_names(_argument_names(fn, len(arguments)))

    with torch.inference_mode(False), torch.enable_grad():
        gradient, used = _autograd_gradient(fn, arguments, positions, seed, device, cotangents)

    specs, offset = [], 0
    for i in positions:
        specs.append(InputSpec(names[i], i, tuple(arguments[i].shape), offset))
        offset += specs[-1].numel
    problem = Problem(
        fn=fn,
        arguments=tuple(
            a.detach().to(torch.float64, copy=True) if a.is_floating_point() else a.detach().clone()
            for a in arguments
        ),
        names=names,
        specs=tuple(specs),
        cotangents=used,
        seed=seed,
    )
    probes = (
        Probes(count=problem.size) if basis else _choose_probes(judge_oracle, problem.size, seed)
    )
    return _Setup(
        oracle=judge_oracle,
        label=name or _function_name(fn),
        dtype=dtype,
        device=device,
        positions=positions,
        gradient=gradient,
        problem=problem,
        probes=probes,
    )


@recorded
def assert_gradients_correct(
    fn: Callable[..., Any],
    inputs: Inputs,
    *,
    oracle: str | Oracle = "finite_difference",
    expr: Any = None,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
    name: str | None = None,
    cotangents: Cotangents = None,
) -> CheckResult:
    """Like :func:`check_function`, but raise on failure: for use inside anyone's tests.

    Raises :class:`gradcheck.GradientMismatch` (an ``AssertionError``) when an element is outside
    its tolerance and :class:`gradcheck.InconclusiveCheck` when the oracle decided nothing;
    returns the passing :class:`CheckResult` otherwise.
    """
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
    ).raise_for_failure()


# -- inputs ------------------------------------------------------------------------------------


def _short_repr(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_tensor_tuple(inputs: object) -> tuple[torch.Tensor, ...]:
    if isinstance(inputs, torch.Tensor):
        arguments: tuple[object, ...] = (inputs,)
    elif isinstance(inputs, (tuple, list)):
        arguments = tuple(inputs)
    else:
        raise InvalidArgument(
            f"Got inputs of type {type(inputs).__name__}, but inputs must be a torch.Tensor or "
            "a tuple of tensors. Wrap numbers with torch.tensor(..., dtype=torch.float64)."
        )
    if not arguments:
        raise InvalidArgument(
            "Got inputs=(), but there must be at least one tensor to differentiate."
        )
    for i, item in enumerate(arguments):
        if not isinstance(item, torch.Tensor):
            raise InvalidArgument(
                f"Got inputs[{i}] of type {type(item).__name__} ({_short_repr(item)}), but every "
                "input must be a torch.Tensor. Wrap it with torch.tensor(..., "
                "dtype=torch.float64), or bind non-tensor arguments with a lambda: "
                "check_function(lambda x: fn(x, 3), x)."
            )
        if item.device.type == "meta":
            raise InvalidArgument(
                f"Got inputs[{i}] on the meta device, which holds no values to differentiate "
                "at. Materialise it first, for example torch.randn(shape, dtype=torch.float64)."
            )
        if item.layout != torch.strided:
            raise InvalidArgument(
                f"Got inputs[{i}] with layout {item.layout}, but only dense (strided) tensors "
                "are supported. Convert it with .to_dense()."
            )
        if item.is_complex():
            raise InvalidArgument(
                f"Got inputs[{i}] of dtype {item.dtype}, but complex gradients are not "
                "supported. Check the real and imaginary parts as separate real inputs."
            )
    return arguments  # type: ignore[return-value]


def _differentiable_positions(arguments: tuple[torch.Tensor, ...]) -> list[int]:
    positions = [i for i, a in enumerate(arguments) if a.requires_grad]
    if not positions:
        positions = [i for i, a in enumerate(arguments) if a.is_floating_point()]
    if not positions:
        kinds = ", ".join(f"inputs[{i}] is {a.dtype}" for i, a in enumerate(arguments))
        raise InvalidArgument(
            f"Got no floating-point input to differentiate ({kinds}). Gradients exist only for "
            "floating-point tensors: convert with x.double() (float64 is the dtype of truth)."
        )
    for i in positions:
        tensor = arguments[i]
        if tensor.numel() == 0:
            raise InvalidArgument(
                f"Got inputs[{i}] with shape {tuple(tensor.shape)}, which has no elements: "
                "there is no gradient to check. Pass a non-empty tensor."
            )
        bad = (~torch.isfinite(tensor.detach())).nonzero()
        if len(bad):
            first = tuple(int(j) for j in bad[0])
            raise InvalidArgument(
                f"Got inputs[{i}] with {len(bad)} NaN/Inf value(s), the first at index {first}: "
                "a gradient at a non-finite point is meaningless. Pass finite values."
            )
    return positions


def _least_precise(dtypes: Any) -> torch.dtype:
    return max(dtypes, key=lambda d: torch.finfo(d).eps)


def _function_name(fn: Callable[..., Any]) -> str:
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type):
        return f"{owner.__name__}.{getattr(fn, '__name__', 'apply')}"
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if qualname and qualname.startswith("_VariableFunctions"):
        return f"torch.{fn.__name__}"  # torch.sin and the other C builtins
    if qualname and "<locals>" in qualname:
        return qualname.rsplit(".", 1)[-1]
    return qualname or type(fn).__name__


def _argument_names(fn: Callable[..., Any], count: int) -> tuple[str, ...]:
    """Names of ``fn``'s first ``count`` positional parameters, or x / x0, x1, ... if unknown."""
    target = fn
    owner = getattr(fn, "__self__", None)
    skip = 0
    if isinstance(owner, type) and issubclass(owner, torch.autograd.Function):
        target, skip = owner.forward, 1  # Function.apply(*args) -> forward(ctx, *args)
    try:
        parameters = list(inspect.signature(target).parameters.values())[skip:]
    except (TypeError, ValueError):
        parameters = []
    positional = [
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) >= count and len(set(positional[:count])) == count:
        return tuple(positional[:count])
    return ("x",) if count == 1 else tuple(f"x{i}" for i in range(count))


# -- autograd ----------------------------------------------------------------------------------


def _as_output_tuple(out: object, label: str) -> tuple[torch.Tensor, ...]:
    items = out if isinstance(out, (tuple, list)) else (out,)
    if not items:
        raise InvalidArgument(
            f"Got an empty {type(out).__name__} from {label!r}, but fn must return a tensor or "
            "a tuple of tensors."
        )
    for j, item in enumerate(items):
        if not isinstance(item, torch.Tensor):
            where = "fn's output" if len(items) == 1 else f"fn's output[{j}]"
            raise InvalidArgument(
                f"Got {where} of type {type(item).__name__} from {label!r}, but fn must return "
                "a tensor or a tuple of tensors. Return the tensor itself (not .item() or "
                ".tolist()), or check a lambda that picks the tensor outputs."
            )
        if item.is_complex():
            raise InvalidArgument(
                f"Got a complex output ({item.dtype}) from {label!r}, but complex outputs are "
                "not supported. Return torch.view_as_real(out) to check both parts."
            )
    return tuple(items)


def _autograd_gradient(
    fn: Callable[..., Any],
    arguments: tuple[torch.Tensor, ...],
    positions: list[int],
    seed: int,
    device: torch.device,
    given: Cotangents = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor | None, ...]]:
    """``v^T J`` by reverse mode in the inputs' dtype (flat float64 on CPU) and the cotangents."""
    copies = [a.detach().clone() for a in arguments]
    for i in positions:
        copies[i].requires_grad_(True)
    with frozen_rng(seed, device):
        outputs = _as_output_tuple(fn(*copies), _function_name(fn))
    chosen = _given_cotangents(given, outputs)
    generator = torch.Generator().manual_seed(seed)
    cotangents: list[torch.Tensor | None] = []
    tracked, grad_outputs = [], []
    for j, out in enumerate(outputs):
        if not out.is_floating_point():
            cotangents.append(None)
            continue
        if chosen is not None:
            v = chosen[j].detach().to("cpu", torch.float64)
        elif out.numel() == 1:
            v = torch.ones(out.shape, dtype=torch.float64)
        else:
            v = torch.randn(out.shape, generator=generator, dtype=torch.float64)
        v_in_dtype = v.to(out.dtype)
        cotangents.append(v_in_dtype.to(device=out.device, dtype=torch.float64))
        if out.requires_grad:
            tracked.append(out)
            grad_outputs.append(v_in_dtype.to(out.device))
    if all(v is None for v in cotangents):
        raise InvalidArgument(
            "Got only integer or boolean outputs from fn; there is nothing to differentiate. "
            "Return the floating-point result."
        )
    if not tracked:
        raise InvalidArgument(
            "Got an output that does not depend on any differentiable input (no output requires "
            "grad). Check that fn uses its inputs through torch operations, without .detach(), "
            ".item(), numpy or torch.no_grad()."
        )
    differentiable = [copies[i] for i in positions]
    grads = torch.autograd.grad(tracked, differentiable, grad_outputs, allow_unused=True)
    flat = [
        (torch.zeros_like(x) if g is None else g).detach().to("cpu", torch.float64).reshape(-1)
        for x, g in zip(differentiable, grads)
    ]
    return torch.cat(flat), tuple(cotangents)


def _given_cotangents(
    given: Cotangents, outputs: tuple[torch.Tensor, ...]
) -> list[torch.Tensor] | None:
    """The caller's cotangents, one per output, checked against the outputs' shapes."""
    if given is None:
        return None
    if not isinstance(given, (torch.Tensor, tuple, list)):
        raise InvalidArgument(
            f"Got cotangents of type {type(given).__name__}, but cotangents must be a tensor "
            "shaped like fn's output, or a tuple with one tensor per output."
        )
    items = [given] if isinstance(given, torch.Tensor) else list(given)
    if len(items) != len(outputs):
        raise InvalidArgument(
            f"Got {len(items)} cotangent(s) for {len(outputs)} output(s). Pass one tensor per "
            "output (None for an integer or boolean output)."
        )
    chosen = []
    for j, (v, out) in enumerate(zip(items, outputs)):
        if not out.is_floating_point():
            chosen.append(torch.empty(0))
            continue
        if not isinstance(v, torch.Tensor):
            raise InvalidArgument(
                f"Got cotangents[{j}] of type {type(v).__name__}, but it must be a tensor of "
                f"shape {tuple(out.shape)}. Wrap it: torch.tensor(..., dtype=torch.float64)."
            )
        if tuple(v.shape) != tuple(out.shape):
            raise InvalidArgument(
                f"Got cotangents[{j}] of shape {tuple(v.shape)}, but output {j} has shape "
                f"{tuple(out.shape)}; v in v^T J must have the output's shape."
            )
        if not v.is_floating_point() or not bool(torch.isfinite(v).all()):
            raise InvalidArgument(
                f"Got cotangents[{j}] of dtype {v.dtype} with values {_short_repr(v)}; it must "
                "hold finite floating-point values."
            )
        chosen.append(v)
    return chosen


def _choose_probes(oracle: Oracle, size: int, seed: int) -> Probes:
    if oracle.prefers_basis or size <= oracle.full_max:
        return Probes(count=size)
    generator = torch.Generator().manual_seed(seed + 1)
    directions = torch.randn(oracle.directions, size, generator=generator, dtype=torch.float64)
    directions /= directions.abs().amax(dim=1, keepdim=True)
    return Probes(count=oracle.directions, directions=directions)


def _project(gradient: torch.Tensor, probes: Probes) -> tuple[list[float], list[float]]:
    """Autograd's derivative along every probe, and the rounding of that contraction."""
    if probes.directions is None:
        return gradient.tolist(), [0.0] * probes.count
    terms = probes.directions * gradient
    return terms.sum(dim=1).tolist(), (4.0 * EPS64 * terms.abs().sum(dim=1)).tolist()


def _reproduce_line(
    label: str,
    names: tuple[str, ...],
    positions: list[int],
    oracle: object,
    judge_oracle: Oracle,
    atol: float | None,
    rtol: float | None,
    seed: int,
    *,
    given_cotangents: bool = False,
) -> str:
    args = names[0] if len(names) == 1 else f"({', '.join(names)})"
    extras = [f"oracle={judge_oracle.describe() if isinstance(oracle, Oracle) else repr(oracle)}"]
    if isinstance(oracle, str) and oracle == "sympy":
        extras.append(f"expr={getattr(judge_oracle, 'expr', None)!r}")
    extras += [f"{k}={v!r}" for k, v in (("atol", atol), ("rtol", rtol)) if v is not None]
    if given_cotangents:
        extras.append("cotangents=v")
    extras.append(f"seed={seed}")
    function = label if label.isidentifier() or ("." in label and "<" not in label) else "fn"
    return f"gradcheck.check_function({function}, {args}, {', '.join(extras)})"


# -- result ------------------------------------------------------------------------------------


class _Context:
    """Everything needed to turn verdicts into a :class:`CheckResult` and its message."""

    def __init__(
        self,
        *,
        label: str,
        oracle: Oracle,
        problem: Problem,
        probes: Probes,
        dtype: str,
        device: str,
        vector_output: bool,
        reproduce: str,
    ) -> None:
        self.label = label
        self.oracle = oracle
        self.problem = problem
        self.probes = probes
        self.dtype = dtype
        self.device = device
        self.vector_output = vector_output
        self.reproduce = reproduce

    def locate(self, p: int) -> tuple[str | None, tuple[int, ...] | None, int | None, float | None]:
        """(input name, index, direction, input value) of probe ``p``."""
        if not self.probes.is_basis:
            return None, None, p, None
        for spec in self.problem.specs:
            if p < spec.offset + spec.numel:
                return spec.name, spec.unravel(p - spec.offset), None, float(self.problem.point[p])
        raise IndexError(p)

    def where(self, p: int) -> str:
        name, index, direction, _ = self.locate(p)
        if direction is not None:
            return f"direction {direction} of {self.probes.count} (seed {self.problem.seed})"
        inside = ", ".join(map(str, index or ()))
        return f"{name}[{inside}]" if inside else str(name)

    def headline(self, kind: str, p: int | None) -> str:
        subject = "v^T d out" if self.vector_output else "d out"
        name, _, direction, _ = self.locate(p) if p is not None else (None, None, None, None)
        if name:
            wrt = f" / d {name}"
        else:
            wrt = " along random directions" if direction is not None else ""
        return (
            f"{kind}: check_function {self.label!r} ({self.dtype}, {self.device}), {subject}{wrt}"
        )

    def result(
        self,
        autograd: list[float],
        estimate: Any,
        verdicts: list[Verdict],
        tolerance: Tolerance,
        seed: int,
        started: float,
    ) -> CheckResult:
        summary = summarize(verdicts)
        decided, failures, worst = summary.decided, summary.failures, summary.worst
        report = None
        if worst is not None:
            name, index, direction, point = self.locate(worst)
            report = ElementReport(
                input=name,
                index=index,
                direction=direction,
                point=point,
                autograd=autograd[worst],
                oracle=estimate.values[worst],
                error_estimate=estimate.errors[worst],
                abs_error=verdicts[worst].abs_error,
                allowed=verdicts[worst].allowed,
                lower=estimate.lower[worst],
                upper=estimate.upper[worst],
            )
        kinks = tuple(
            Note(
                self.where(p),
                f"on a kink: autograd {format_number(autograd[p])} within the one-sided "
                f"derivatives [{format_number(estimate.lower[p])}, "
                f"{format_number(estimate.upper[p])}]",
            )
            for p, v in enumerate(verdicts)
            if v.status == KINK
        )
        undecided = tuple(
            Note(self.where(p), f"inconclusive: {estimate.reasons[p]}")
            for p, v in enumerate(verdicts)
            if v.status == UNDECIDED
        )
        status = summary.status
        max_abs, max_rel = summary.max_abs_error, summary.max_rel_error
        errors = [estimate.errors[p] for p in decided]
        if status == FAILED:
            assert worst is not None and report is not None
            message = failure_text(
                headline=self.headline("Gradient mismatch", worst),
                where=self.where(worst),
                point=report.point,
                autograd=report.autograd,
                oracle_name=self.oracle.name,
                oracle_value=report.oracle,
                error_estimate=report.error_estimate,
                lower=report.lower,
                upper=report.upper,
                verdict=verdicts[worst],
                tolerance=tolerance,
                failed=len(failures),
                total=len(verdicts),
                reproduce=self.reproduce,
            )
        elif status == INCONCLUSIVE:
            shown = "\n".join(f"  {n.where}: {n.reason}" for n in undecided[:5])
            more = f"\n  ... and {len(undecided) - 5} more" if len(undecided) > 5 else ""
            message = (
                f"{self.headline('Inconclusive', None)}: {self.oracle.name} decided none of "
                f"{len(verdicts)} elements (this is not a gradient bug)\n{shown}{more}\n"
                f"  reproduce: {self.reproduce}"
            )
        else:
            extra = f", {len(kinks)} on kinks" if kinks else ""
            extra += f", {len(undecided)} inconclusive" if undecided else ""
            message = (
                f"Gradients match: check_function {self.label!r} ({self.dtype}, {self.device}) "
                f"against {self.oracle.name}: {len(decided)} of {len(verdicts)} elements "
                f"checked{extra}; max |diff| {max_abs:.2e} (relative {max_rel:.2e})"
            )
        return CheckResult(
            passed=status == PASSED,
            status=status,
            name=self.label,
            oracle=self.oracle.name,
            dtype=self.dtype,
            device=self.device,
            mode="elementwise" if self.probes.is_basis else "directional",
            checked=len(decided),
            failed=len(failures),
            max_abs_error=max_abs,
            max_rel_error=max_rel,
            tolerance=tolerance,
            error_estimate=max(errors, default=math.nan),
            worst=report,
            duration_s=time.perf_counter() - started,
            seed=seed,
            message=message,
            reproduce=self.reproduce,
            kinks=kinks,
            inconclusive=undecided,
        )
