"""The set-up every element-wise gradient check shares: validated arguments, autograd's
``v^T J`` in the inputs' dtype, and the oracle's float64 :class:`~gradcheck.oracles.Problem`
with its probes.

Only what autograd differentiates is judged, as torch's own gradcheck does: an output that does
not require grad is left out (its cotangent is None), and so is every output element that is
NaN/Inf at the input (its cotangent is 0); input elements whose gradient flows through such an
element, or that are NaN/Inf themselves, are marked undecided with the reason. An empty input
has nothing to check and is left out. When fn cannot run on float64 copies (it closes over
float32 weights), the oracle evaluates it in the inputs' own dtype and says so.

check_function judges autograd against the oracle on this set-up; oracle_gradient returns the
oracle's side alone.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gradcheck import arguments as args
from gradcheck import validation
from gradcheck.backward_contract import contract_problems
from gradcheck.complex_inputs import complex_dtype, through_real_parts
from gradcheck.errors import InvalidArgument
from gradcheck.oracles import Oracle, Probes, Problem, resolve_oracle
from gradcheck.oracles.base import EPS64, InputSpec, frozen_rng, storage_copy
from gradcheck.oracles.symbolic import Symbolic
from gradcheck.results import Note
from gradcheck.sparse_inputs import through_values
from gradcheck.tolerances import AUTOGRAD_ROUNDING_FACTOR

FLOWS_THROUGH_NON_FINITE = (
    "its gradient flows through output elements that are NaN/Inf at the input, which no "
    "oracle can differentiate: they are left out of v^T J"
)
NON_FINITE_INPUT = "the input is NaN/Inf here: there is no derivative at a non-finite point"


@dataclass(frozen=True)
class Autograd:
    """Autograd's side: ``v^T J`` (flat float64) from two backward passes with the same
    cotangent, the float64 cotangents the oracle contracts with (None: output left out), the
    outputs left out and why, and the flat input elements whose gradient flows through output
    elements that are NaN/Inf at the input."""

    gradient: torch.Tensor
    repeated: torch.Tensor
    cotangents: tuple[torch.Tensor | None, ...]
    left_out: tuple[Note, ...]
    flows_through_non_finite: torch.Tensor
    complex_outputs: tuple[Note, ...] = ()
    contract: tuple[str, ...] = ()
    """What backward owes besides the numbers and did not hold to
    (:mod:`gradcheck.backward_contract`)."""
    unavailable: str | None = None
    """For a higher-order level: why autograd could not differentiate the gradient (a
    derivative torch does not implement), or None."""


@dataclass(frozen=True)
class Prepared:
    """A check ready to judge: the oracle, the function's label, autograd's side (computed in
    ``dtype`` on ``device``), the oracle's problem and probes, what was left out, and the
    reason of every probe undecided before any oracle runs (``undecided``: probe -> reason);
    ``impure`` says why fn is not a function of its inputs (None when two evaluations at the
    same point agree)."""

    oracle: Oracle
    label: str
    dtype: torch.dtype
    device: torch.device
    positions: list[int]
    arguments: tuple[torch.Tensor, ...]
    """The arguments fn is called with, in their own dtypes (complex ones as their parts)."""
    autograd: Autograd
    problem: Problem
    probes: Probes
    left_out: tuple[Note, ...]
    undecided: dict[int, str]
    impure: str | None
    shown_dtype: str = ""
    """The dtype a user reads (``complex128`` for a complex input checked as float64 pairs)."""

    @property
    def gradient(self) -> torch.Tensor:
        """Autograd's flat float64 ``v^T J``."""
        return self.autograd.gradient


def prepare(
    fn: Callable[..., Any],
    inputs: args.Inputs,
    oracle: str | Oracle,
    expr: Any,
    seed: int,
    name: str | None,
    cotangents: args.Cotangents,
    *,
    basis: bool = False,
    batched: bool = False,
    higher_order: bool = False,
) -> Prepared:
    """Validate the arguments, run autograd once and build the oracle's problem (probes along
    every element with ``basis``, else as the oracle prefers for the input's size); with
    ``batched``, also backward under vmap against the loop; with ``higher_order`` (fn is
    autograd's gradient of another function) a derivative torch does not implement makes the
    check inconclusive rather than raising."""
    judge_oracle = resolve_oracle(oracle, expr)
    validation.callable_fn(fn)
    validation.seed(seed)
    validation.optional_name(name)
    arguments = validation.tensor_tuple(inputs, complex_ok=True)
    names = judge_oracle.input_names(args.argument_names(fn, len(arguments)))
    label = name or args.function_name(fn)
    fn, arguments, sparse = through_values(fn, arguments, names)
    fn, arguments, complex_inputs = through_real_parts(fn, arguments, names)
    positions = args.differentiable_positions(arguments)
    _refuse_complex_expr(judge_oracle, complex_inputs, positions)
    input_notes = tuple(note for i, note in (sparse | complex_inputs).items() if i in positions)
    dtype = args.least_precise(arguments[i].dtype for i in positions)
    device = arguments[positions[0]].device

    with torch.inference_mode(False), torch.enable_grad():
        side = autograd_gradient(
            fn,
            arguments,
            positions,
            seed,
            device,
            cotangents,
            names=names,
            batched=batched,
            higher_order=higher_order,
        )
    if side.complex_outputs:
        fn = args.real_outputs(fn)

    specs, offset = [], 0
    for i in positions:
        specs.append(InputSpec(names[i], i, tuple(arguments[i].shape), offset, i in complex_inputs))
        offset += specs[-1].numel
    problem, own_dtype = _oracle_problem(fn, arguments, names, tuple(specs), side.cotangents, seed)
    undecided = _undecided_elements(problem, side)
    probes = (
        Probes(count=problem.size) if basis else choose_probes(judge_oracle, problem.size, seed)
    )
    left_out = input_notes + side.left_out + _empty_inputs(problem) + own_dtype
    left_out += side.complex_outputs
    if not probes.is_basis and undecided:
        probes = _without(probes, undecided)
        reasons = "; ".join(sorted(set(undecided.values())))
        left_out += (
            Note(
                "inputs",
                f"{len(undecided)} element(s) left out of the random directions: {reasons}",
            ),
        )
        undecided = {}
    return Prepared(
        oracle=judge_oracle,
        label=label,
        dtype=dtype,
        device=device,
        shown_dtype=_shown_dtype(dtype, any(i in complex_inputs for i in positions)),
        positions=positions,
        arguments=arguments,
        autograd=side,
        problem=problem,
        probes=probes,
        left_out=left_out,
        undecided=undecided,
        impure=_impurity(problem),
    )


def _shown_dtype(dtype: torch.dtype, complex_input: bool) -> str:
    """How a result names the check's dtype: the complex dtype whose parts are ``dtype`` when
    a differentiated input is complex."""
    return str(complex_dtype(dtype) if complex_input else dtype).removeprefix("torch.")


def _refuse_complex_expr(
    oracle: Oracle, complex_inputs: dict[int, Note], positions: list[int]
) -> None:
    """The SymPy oracle's expressions are over real symbols: refuse a complex input for it."""
    differentiated = [i for i in complex_inputs if i in positions]
    if differentiated and isinstance(oracle, Symbolic):
        raise InvalidArgument(
            f"Got complex inputs[{differentiated[0]}] with oracle={oracle.name!r}, whose "
            "expressions are over real symbols. Use oracle='finite_difference' for complex "
            "inputs, or pass the real and imaginary parts as separate real inputs."
        )


def autograd_gradient(
    fn: Callable[..., Any],
    arguments: tuple[torch.Tensor, ...],
    positions: list[int],
    seed: int,
    device: torch.device,
    given: args.Cotangents = None,
    *,
    names: Sequence[str] = (),
    batched: bool = False,
    higher_order: bool = False,
) -> Autograd:
    """``v^T J`` by reverse mode in the inputs' dtype (flat float64 on CPU), twice with the same
    cotangent, what the oracle needs to compute the same contraction, and the problems of
    backward's contract (``names``: every argument's; ``batched``: vmap checked too)."""
    copies = [storage_copy(a) for a in arguments]
    for i in positions:
        copies[i].requires_grad_(True)
    label = args.function_name(fn)
    with frozen_rng(seed, device):
        outputs = args.output_tuple(fn(*copies), label)
    complex_outputs = tuple(
        Note(_output_name(j, len(outputs)), _JUDGED_AS_REAL)
        for j, o in enumerate(outputs)
        if o.is_complex()
    )
    outputs = tuple(torch.view_as_real(o.resolve_conj()) if o.is_complex() else o for o in outputs)
    chosen = args.given_cotangents(given, outputs)
    generator = torch.Generator().manual_seed(seed)
    cotangents: list[torch.Tensor | None] = []
    left_out: list[Note] = []
    tracked, grad_outputs, non_finite = [], [], []
    for j, out in enumerate(outputs):
        if not out.is_floating_point():
            cotangents.append(None)
            continue
        if chosen is not None:
            given_v = chosen[j]
            if given_v is None:
                cotangents.append(None)
                left_out.append(
                    Note(_output_name(j, len(outputs)), args.LEFT_OUT_BY_CALLER.format(j=j))
                )
                continue
            v = given_v.detach().to("cpu", torch.float64)
        else:
            v = args.default_cotangent(out.shape, generator)
        if not out.requires_grad:
            cotangents.append(None)
            left_out.append(Note(_output_name(j, len(outputs)), _NOT_DIFFERENTIATED))
            continue
        finite = torch.isfinite(out.detach()).to(v.device)
        v = torch.where(finite, v, 0.0)
        v_in_dtype = v.to(out.dtype)
        cotangents.append(v_in_dtype.to(device=out.device, dtype=torch.float64))
        tracked.append(out)
        grad_outputs.append(v_in_dtype.to(out.device))
        non_finite.append((~finite).to(device=out.device, dtype=out.dtype))
    _require_differentiable_outputs(cotangents, tracked, left_out)
    differentiable = [copies[i] for i in positions]
    try:
        grads = [_grad(tracked, differentiable, grad_outputs) for _ in "12"]
    except (RuntimeError, NotImplementedError) as error:
        unimplemented = isinstance(error, NotImplementedError) or "not implemented" in str(error)
        if not higher_order or not unimplemented:
            raise
        nan = torch.full((sum(x.numel() for x in differentiable),), math.nan, dtype=torch.float64)
        reason = f"autograd cannot differentiate the gradient here: {_first_line(error)}"
        flows = torch.zeros_like(nan, dtype=torch.bool)
        return Autograd(
            nan, nan, tuple(cotangents), tuple(left_out), flows, complex_outputs, (), reason
        )
    twice = [_flat(differentiable, g) for g in grads]
    if torch.equal(twice[0], twice[1]):
        twice[1] = twice[0]  # one copy held through the check, not two alike
    input_names = [names[i] if i < len(names) else f"inputs[{i}]" for i in positions]
    output_names = [
        _output_name(j, len(outputs)) for j, v in enumerate(cotangents) if v is not None
    ]
    contract = contract_problems(
        tracked, differentiable, grad_outputs, grads[0], input_names, output_names, seed, batched
    )
    flows = torch.zeros_like(twice[0], dtype=torch.bool)
    if any(bool(mask.any()) for mask in non_finite):
        through = _flat(differentiable, _grad(tracked, differentiable, non_finite))
        flows = (through != 0) | ~torch.isfinite(through)
    return Autograd(
        twice[0],
        twice[1],
        tuple(cotangents),
        tuple(left_out),
        flows,
        complex_outputs,
        contract,
    )


_NOT_DIFFERENTIATED = (
    "does not require grad: autograd does not differentiate it (a saved statistic, an index), "
    "so it is left out, as torch.autograd.gradcheck leaves it out"
)


_JUDGED_AS_REAL = (
    "is complex: judged as torch.view_as_real(output), its real and imaginary parts, with a "
    "complex cotangent v contracted as Re(sum(conj(v) * output)), PyTorch's convention"
)


def _output_name(j: int, count: int) -> str:
    return "output" if count == 1 else f"output[{j}]"


def _require_differentiable_outputs(
    cotangents: Sequence[torch.Tensor | None], tracked: Sequence[torch.Tensor], left_out: list
) -> None:
    if all(v is None for v in cotangents) and not left_out:
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


def _grad(
    tracked: Sequence[torch.Tensor],
    differentiable: Sequence[torch.Tensor],
    grad_outputs: Sequence[torch.Tensor],
) -> tuple[torch.Tensor | None, ...]:
    return torch.autograd.grad(
        tracked, differentiable, grad_outputs, allow_unused=True, retain_graph=True
    )


def _flat(
    differentiable: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None]
) -> torch.Tensor:
    flat = [
        (torch.zeros_like(x) if g is None else g).detach().to("cpu", torch.float64).reshape(-1)
        for x, g in zip(differentiable, grads)
    ]
    return torch.cat(flat)


def _oracle_problem(
    fn: Callable[..., Any],
    arguments: tuple[torch.Tensor, ...],
    names: tuple[str, ...],
    specs: tuple[InputSpec, ...],
    cotangents: tuple[torch.Tensor | None, ...],
    seed: int,
) -> tuple[Problem, tuple[Note, ...]]:
    """The oracle's problem on float64 copies; when fn raises there (it closes over float32
    weights), fn evaluated in the inputs' own dtypes, with a note that says so."""
    copies = tuple(
        storage_copy(a, torch.float64 if a.is_floating_point() else None) for a in arguments
    )
    problem = Problem(fn, copies, names, specs, cotangents, seed)
    try:
        with torch.inference_mode(False), torch.no_grad():
            problem.outputs_at_point()
    except Exception as float64_error:
        dtypes = tuple(a.dtype for a in arguments)
        in_own_dtype = Problem(_in_dtypes(fn, dtypes), copies, names, specs, cotangents, seed)
        try:
            with torch.inference_mode(False), torch.no_grad():
                in_own_dtype.outputs_at_point()
        except Exception:
            raise InvalidArgument(
                "Got an fn that raises where gradcheck's oracle evaluates it: on float64 "
                "copies of the inputs at the same point, under torch.no_grad() "
                f"({type(float64_error).__name__}: {_first_line(float64_error)}). Make fn "
                "accept float64 tensors (the dtype of truth), for example by converting the "
                "module or weights it closes over with .double()."
            ) from float64_error
        kinds = ", ".join(sorted({str(d).removeprefix("torch.") for d in dtypes}))
        note = Note(
            "fn",
            f"cannot run on float64 copies ({type(float64_error).__name__}: "
            f"{_first_line(float64_error)}), so the oracle evaluated it in the inputs' own "
            f"dtype ({kinds}), with that dtype's rounding",
        )
        return in_own_dtype, (note,)
    return problem, ()


def _in_dtypes(fn: Callable[..., Any], dtypes: tuple[torch.dtype, ...]) -> Callable[..., Any]:
    """``fn`` called with its float64 arguments cast back to the inputs' own dtypes."""

    def in_own_dtypes(*arguments: torch.Tensor) -> Any:
        return fn(*(a.to(d) if a.is_floating_point() else a for a, d in zip(arguments, dtypes)))

    return in_own_dtypes


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else repr(error)


def _impurity(problem: Problem) -> str | None:
    """Why fn is not a function of its inputs (two evaluations at the same point, with the same
    seeded torch RNG, differ: numpy or Python randomness, a call counter, a changing shape), or
    None when they agree bitwise. The first is the problem's remembered one, which the oracles
    then take as fn at the point."""
    with torch.inference_mode(False), torch.no_grad():
        first = problem.floating(problem.outputs_at_point())
        second = problem.floating_outputs_at(problem.point)
    shapes = [tuple(out.shape) for out in first], [tuple(out.shape) for out in second]
    if shapes[0] != shapes[1]:
        return (
            "fn is not a function of its inputs: two evaluations at the same point return "
            f"outputs of shapes {shapes[0]} and {shapes[1]}"
        )
    largest = 0.0
    for a, b in zip(first, second):
        if torch.equal(a, b):
            continue
        same = (a == b) | (torch.isnan(a) & torch.isnan(b))
        if not bool(same.all()):
            differ = (a - b).abs()
            largest = max(largest, float(differ[~same].nan_to_num(nan=torch.inf).max()))
    if largest == 0.0:
        return None
    return (
        "fn is not a function of its inputs: two evaluations at the same point differ by up to "
        f"{largest:.3g} (numpy or Python randomness, a call counter or other state that "
        "gradcheck's seeded torch RNG does not fix)"
    )


def apply_undecided(estimate: Any, undecided: dict[int, str]) -> None:
    """Mark the probes no oracle can decide in an oracle's estimate, with their reasons."""
    for p, reason in undecided.items():
        estimate.values[p], estimate.errors[p] = float("nan"), float("inf")
        estimate.lower[p] = estimate.upper[p] = None
        estimate.reasons[p] = reason


def _undecided_elements(problem: Problem, side: Autograd) -> dict[int, str]:
    """Flat elements no oracle can decide: NaN/Inf inputs, and those whose gradient flows
    through NaN/Inf outputs."""
    reasons = {int(p): NON_FINITE_INPUT for p in (~torch.isfinite(problem.point)).nonzero()}
    for p in side.flows_through_non_finite.nonzero():
        reasons.setdefault(int(p), FLOWS_THROUGH_NON_FINITE)
    return reasons


def _without(probes: Probes, undecided: dict[int, str]) -> Probes:
    """Random directions that do not move the undecided elements (rescaled to max-norm 1)."""
    return dataclasses.replace(probes, excluded=tuple(sorted(undecided)))


def _empty_inputs(problem: Problem) -> tuple[Note, ...]:
    return tuple(
        Note(spec.name, f"is empty (shape {spec.shape}): there is nothing to check in it")
        for spec in problem.specs
        if spec.numel == 0
    )


def choose_probes(oracle: Oracle, size: int, seed: int) -> Probes:
    """Every element for small inputs (or an oracle that wants them), else the oracle's number
    of seeded random directions (``seed + 1``), each scaled to max-norm 1."""
    if oracle.prefers_basis or size <= oracle.full_max:
        return Probes(count=size)
    return Probes(count=oracle.directions, seed=seed)


def project(
    gradient: torch.Tensor, probes: Probes, floor: float = 0.0
) -> tuple[list[float], list[float]]:
    """Autograd's derivative along every probe, and the rounding of that contraction (one
    direction at a time: no ``(directions, size)`` matrix is held), plus a rounding ``floor``
    per element moved (:func:`higher_order_floor`)."""
    if probes.is_basis:
        return gradient.tolist(), [floor] * probes.count
    values, roundings = [], []
    terms = torch.empty_like(gradient)  # one buffer for every direction's products
    for p in range(probes.count):
        direction = probes.direction(p, int(gradient.numel()), gradient.device)
        # Elements a direction does not move never contribute (autograd may be NaN there).
        torch.mul(direction, gradient, out=terms).masked_fill_(direction == 0, 0.0)
        values.append(float(terms.sum()))
        rounding = AUTOGRAD_ROUNDING_FACTOR * EPS64 * float(terms.abs_().sum())
        moved = float(torch.abs(direction, out=terms).sum())
        roundings.append(rounding + floor * moved)
    return values, roundings


HIGHER_ORDER_ROUNDING_ULPS = 64.0
"""The rounding allowed a higher-order autograd derivative, in units of ``eps`` times the
scale of what it is computed from (:func:`higher_order_floor`)."""


def higher_order_floor(setup: Prepared) -> float:
    """The rounding of autograd's derivative of a gradient, which no dtype-keyed tolerance
    knows: double backward runs a deeper graph whose terms are as large as the gradient and
    its derivative, and an input of size ``|x|`` loses ``eps * |x|`` absolutely in every
    ``exp(x - logsumexp(x))``-like difference it feeds. So ``64 * eps * max(1, |x|) *
    max(|g|, |H v|)`` (largest entries; ``g`` the gradient being differentiated): 1e-14 for
    sin at x ~ 1, far below any relative bug of 1e-6, and the cancellation residue of
    logcumsumexp's second derivative at x = 1e4 (2e-12) or of multi-head attention's (2e-12
    next to entries of 78) is covered."""
    problem = setup.problem
    if problem.size == 0:
        return 0.0
    eps = float(torch.finfo(setup.dtype).eps)
    with torch.no_grad():
        outputs = problem.floating_outputs_at(problem.point)
    largest_gradient = max(
        (
            float(o.abs().nan_to_num(nan=0.0, posinf=0.0, neginf=0.0).max())
            for o in outputs
            if o.numel()
        ),
        default=0.0,
    )
    finite = setup.gradient[torch.isfinite(setup.gradient)]
    largest_derivative = float(finite.abs().max()) if finite.numel() else 0.0
    scale = max(1.0, float(problem.point.abs().nan_to_num(nan=0.0, posinf=0.0).max()))
    return HIGHER_ORDER_ROUNDING_ULPS * eps * scale * max(largest_gradient, largest_derivative)
