"""Autograd's semantics as reusable checks, for any function and inputs.

Each ``check_*`` function takes ``fn`` (tensors in, a tensor out) and its ``inputs`` and returns
a :class:`~gradcheck.results.SemanticsResult` of claims; call ``.raise_for_failure()`` in a test.
They work on fresh leaf copies of the inputs (the differentiable ones: those with
``requires_grad=True``, or every floating-point input if none has it), so the caller's tensors,
``.grad`` fields, RNG state and grad mode are left as they were. A non-scalar output is reduced
with a cotangent ``v`` (``cotangents=``; default: seeded N(0, 1) values).

- :func:`check_accumulation`: ``k`` backward calls give ``k`` times the single gradient;
  ``grad.zero_()`` between calls keeps it single; gradients of two losses add.
- :func:`check_zero_grad`: ``optimizer.zero_grad()`` with ``set_to_none`` True (the default since
  torch 2.0: ``.grad`` becomes None) and False (zeros); the next backward is single again.
- :func:`check_tracking_off`: ``detach()``, ``requires_grad_(False)``, ``torch.no_grad()`` and
  ``torch.inference_mode()`` record no graph, give identical values and block gradients.
- :func:`check_vector_backward`: ``y.backward(v)`` equals ``v^T J`` from an independent oracle.
- :func:`check_retain_graph`: a second backward through a graph with saved tensors raises unless
  the first kept the graph; with ``retain_graph=True`` the second call accumulates.
- :func:`explain_backward_failure` and :func:`backward`: the common ``backward()`` errors
  (a method instead of a tensor, no ``requires_grad``, a non-scalar without ``gradient``, a
  freed graph) explained in plain words with the fix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from gradcheck import arguments, validation
from gradcheck.arguments import Cotangents
from gradcheck.backward_errors import (
    FREED_GRAPH_FRAGMENT,
    INFERENCE_SAVE_FRAGMENT,
    NO_GRAD_FRAGMENT,
    NON_SCALAR_FRAGMENT,
    backward,
    explain_backward_failure,
)
from gradcheck.errors import InvalidArgument
from gradcheck.oracle_gradients import oracle_gradient
from gradcheck.oracles.base import frozen_rng
from gradcheck.recording import recorded
from gradcheck.results import Claim, SemanticsResult, claims_status
from gradcheck.status import PASSED
from gradcheck.torch_versions import (
    ZERO_GRAD_SETS_NONE,
    error_claim,
    raises,
    versioned_claim,
)
from gradcheck.values import as_floats, check_values

TRACKING_METHODS = ("detach", "requires_grad_", "no_grad", "inference_mode")

__all__ = [
    "FREED_GRAPH_FRAGMENT",
    "INFERENCE_SAVE_FRAGMENT",
    "NON_SCALAR_FRAGMENT",
    "NO_GRAD_FRAGMENT",
    "TRACKING_METHODS",
    "backward",
    "check_accumulation",
    "check_retain_graph",
    "check_tracking_off",
    "check_vector_backward",
    "check_zero_grad",
    "explain_backward_failure",
]


Function = Callable[..., torch.Tensor]


class _Run:
    """Fresh leaf copies of the inputs, the seeded cotangent, and backward passes over them."""

    def __init__(self, fn: Function, inputs: Any, cotangents: Cotangents, seed: int) -> None:
        self.fn = validation.callable_fn(fn)
        self.name = arguments.function_name(fn)
        self.seed = validation.seed(seed)
        self.originals = validation.tensor_tuple(inputs)
        self.positions = arguments.differentiable_positions(self.originals)
        arguments.require_checkable(self.originals, self.positions)
        self.names = arguments.argument_names(fn, len(self.originals))
        probe = self.forward(self.leaves())
        self.cotangent = self._cotangent(probe, cotangents)

    def leaves(self) -> list[torch.Tensor]:
        """New leaf copies: the differentiable ones require grad, the others are constants."""
        copies = [a.detach().clone() for a in self.originals]
        for i in self.positions:
            copies[i].requires_grad_(True)
        return copies

    def differentiable(self, copies: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [copies[i] for i in self.positions]

    def forward(self, copies: Sequence[torch.Tensor]) -> torch.Tensor:
        """``fn`` on ``copies`` with the same RNG state every time."""
        with frozen_rng(self.seed, copies[self.positions[0]].device):
            out = self.fn(*copies)
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            raise InvalidArgument(
                f"Got {type(out).__name__} from {self.name!r}, but the semantics checks need fn "
                "to return one floating-point tensor. Wrap fn to return the loss tensor."
            )
        return out

    def _cotangent(self, out: torch.Tensor, given: Cotangents) -> torch.Tensor | None:
        if given is None:
            if out.numel() == 1:
                return None
            generator = torch.Generator().manual_seed(self.seed)
            v = arguments.default_cotangent(out.shape, generator)
            return v.to(device=out.device, dtype=out.dtype)
        if not isinstance(given, torch.Tensor) or tuple(given.shape) != tuple(out.shape):
            shape = tuple(given.shape) if isinstance(given, torch.Tensor) else type(given).__name__
            raise InvalidArgument(
                f"Got cotangents of shape {shape}, but fn's output has shape "
                f"{tuple(out.shape)}: pass one tensor v of the output's shape."
            )
        return given.detach().to(device=out.device, dtype=out.dtype)

    def backward(self, out: torch.Tensor, **kwargs: Any) -> None:
        out.backward(self.cotangent, **kwargs)

    def grads(self, copies: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
        return [x.grad for x in self.differentiable(copies)]

    def single_gradient(self) -> list[torch.Tensor]:
        """The gradient of one backward pass from fresh leaves (zeros where unused)."""
        copies = self.leaves()
        self.backward(self.forward(copies))
        return [
            torch.zeros_like(x) if x.grad is None else x.grad.detach().clone()
            for x in self.differentiable(copies)
        ]

    def label(self, k: int) -> str:
        """The name of the ``k``-th differentiable input (fn's parameter name)."""
        return self.names[self.positions[k]]


def _result(rule: str, run: _Run, claims: list[Claim], started: float) -> SemanticsResult:
    return SemanticsResult(
        rule=rule,
        name=run.name,
        passed=bool(claims) and claims_status(claims) == PASSED,
        claims=tuple(claims),
        duration_s=time.perf_counter() - started,
    )


def _compare_grads(
    statement: str,
    measured: Sequence[torch.Tensor | None],
    expected: Sequence[torch.Tensor],
    run: _Run,
    *,
    oracle: str = "formula",
    errors: Sequence[torch.Tensor] | None = None,
    bounds: tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]] | None = None,
) -> Claim:
    """One claim: every differentiable input's ``.grad`` against the expected gradient."""
    checks = []
    for k, (got, want) in enumerate(zip(measured, expected)):
        if got is None:
            return Claim(statement, False, f"{run.label(k)}.grad is None after backward")
        checks.append(
            check_values(
                f"{run.label(k)}.grad",
                got,
                want,
                oracle=oracle,
                errors=None if errors is None else errors[k],
                lower=None if bounds is None else bounds[0][k],
                upper=None if bounds is None else bounds[1][k],
                seed=run.seed,
            )
        )
    measured_values = [v for g in measured if g is not None for v in as_floats(g)]
    return Claim.from_checks(statement, checks, measured=measured_values)


def _grad_states(grads: Sequence[torch.Tensor | None]) -> str:
    return ", ".join("None" if g is None else f"tensor{tuple(g.shape)}" for g in grads)


# -- accumulation ------------------------------------------------------------------------------


@recorded
def check_accumulation(
    fn: Function,
    inputs: Any,
    *,
    times: int = 3,
    other: Function | None = None,
    cotangents: Cotangents = None,
    seed: int = 0,
) -> SemanticsResult:
    """Gradients accumulate into ``.grad``: ``k`` backward calls (fresh forward passes) give
    ``k`` times the single gradient for ``k = 1 .. times``; calling ``grad.zero_()`` after each
    pass keeps every pass at the single gradient; and, when ``other`` (a second loss over the
    same inputs) is given, backward of both adds their gradients."""
    started = time.perf_counter()
    validation.positive_int("times", times)
    run = _Run(fn, inputs, cotangents, seed)
    single = run.single_gradient()
    eps = [torch.finfo(g.dtype).eps for g in single]
    claims = []
    for k in range(1, times + 1):
        copies = run.leaves()
        for _ in range(k):
            run.backward(run.forward(copies))
        claims.append(
            _compare_grads(
                f"{k} backward pass(es) accumulate {k} x the single gradient",
                run.grads(copies),
                [k * g for g in single],
                run,
                errors=[k * e * g.abs() for e, g in zip(eps, single)],
            )
        )
    copies = run.leaves()
    kept: list[bool] = []
    for _ in range(times):
        run.backward(run.forward(copies))
        grads = run.grads(copies)
        kept.append(all(g is not None and torch.equal(g, s) for g, s in zip(grads, single)))
        for g in grads:
            if g is not None:
                g.zero_()
    claims.append(
        Claim(
            f"with grad.zero_() after each pass, all {times} passes give the single gradient",
            all(kept),
            "every pass equal to the single gradient (bitwise)"
            if all(kept)
            else f"passes equal to the single gradient: {kept}",
        )
    )
    if other is not None:
        other_run = _Run(other, inputs, None, seed)
        other_single = other_run.single_gradient()
        copies = run.leaves()
        run.backward(run.forward(copies))
        other_run.backward(other_run.forward(copies))
        claims.append(
            _compare_grads(
                f"backward of {run.name!r} then {other_run.name!r} adds their gradients",
                run.grads(copies),
                [a + b for a, b in zip(single, other_single)],
                run,
                errors=[e * (a.abs() + b.abs()) for e, a, b in zip(eps, single, other_single)],
            )
        )
    return _result("accumulation", run, claims, started)


@recorded
def check_zero_grad(
    fn: Function, inputs: Any, *, cotangents: Cotangents = None, seed: int = 0
) -> SemanticsResult:
    """``optimizer.zero_grad()`` clears accumulated gradients: with ``set_to_none=True`` (the
    default since torch 2.0) every ``.grad`` becomes None, with ``set_to_none=False`` zeros; in
    both modes the next backward gives the single gradient, not an accumulated one."""
    started = time.perf_counter()
    run = _Run(fn, inputs, cotangents, seed)
    single = run.single_gradient()
    claims = []
    for mode in (None, True, False):
        copies = run.leaves()
        parameters = run.differentiable(copies)
        optimizer = torch.optim.SGD(parameters, lr=0.0)
        for _ in range(2):
            run.backward(run.forward(copies))
        if mode is None:
            optimizer.zero_grad()
            label = "zero_grad() (default set_to_none=True)"
        else:
            optimizer.zero_grad(set_to_none=mode)
            label = f"zero_grad(set_to_none={mode})"
        grads = run.grads(copies)
        zeros = all(g is not None and not bool(g.any()) for g in grads)
        if mode is False:
            cleared, want = zeros, "zeros"
        else:
            cleared, want = all(g is None for g in grads), "None"
        statement = f"{label} leaves every .grad {want}"
        observed = f"after two backward passes and {label}: .grad = {_describe(grads)}"
        if mode is None:  # zeros (the default before torch 2.0) is the only release change
            claims.append(
                versioned_claim(
                    statement, cleared, observed, ZERO_GRAD_SETS_NONE, release_change=zeros
                )
            )
        else:
            claims.append(Claim(statement, cleared, observed))
        run.backward(run.forward(copies))
        claims.append(
            _compare_grads(
                f"after {label}, one backward gives the single gradient",
                run.grads(copies),
                single,
                run,
            )
        )
    return _result("zero_grad", run, claims, started)


def _describe(grads: Sequence[torch.Tensor | None]) -> str:
    parts = []
    for g in grads:
        if g is None:
            parts.append("None")
        elif not bool(g.any()):
            parts.append(f"zeros{tuple(g.shape)}")
        else:
            parts.append(f"non-zero (max |g| {float(g.abs().max()):.3g})")
    return ", ".join(parts)


# -- tracking off ------------------------------------------------------------------------------


@recorded
def check_tracking_off(
    fn: Function,
    inputs: Any,
    *,
    methods: Sequence[str] = TRACKING_METHODS,
    cotangents: Cotangents = None,
    seed: int = 0,
) -> SemanticsResult:
    """Turning tracking off records no graph and stops gradients, with identical values.

    For each of ``methods`` (``"detach"``, ``"requires_grad_"``, ``"no_grad"``,
    ``"inference_mode"``): the output has no ``grad_fn`` and does not require grad; its values
    equal the tracked computation's bit for bit; in ``fn(x) + fn(x_off)`` only the tracked term
    contributes to the gradient. Also: ``detach()`` shares storage with its source (a write
    through it is visible in the source), ``requires_grad_(False)`` keeps a leaf,
    ``no_grad``/``inference_mode`` restore the grad mode on exit, and an inference tensor cannot be
    saved for backward (torch raises).
    """
    started = time.perf_counter()
    unknown = [m for m in methods if m not in TRACKING_METHODS]
    if unknown or not methods:
        raise InvalidArgument(
            f"Got methods={list(methods)!r}, but each method must be one of "
            f"{list(TRACKING_METHODS)}."
        )
    run = _Run(fn, inputs, cotangents, seed)
    tracked = run.forward(run.leaves()).detach()
    single = run.single_gradient()
    claims: list[Claim] = []
    for method in methods:
        copies = run.leaves()
        out_off, extra = _untracked(run, copies, method)
        difference = float((out_off.detach().double() - tracked.double()).abs().max())
        claims.append(
            Claim(
                f"{method}: no graph is recorded",
                out_off.grad_fn is None and not out_off.requires_grad,
                f"grad_fn={type(out_off.grad_fn).__name__ if out_off.grad_fn else None}, "
                f"requires_grad={out_off.requires_grad}",
            )
        )
        claims.append(
            Claim(
                f"{method}: values equal the tracked computation bit for bit",
                torch.equal(out_off, tracked),
                f"max |diff| {difference:.3g}",
            )
        )
        fresh = run.leaves()
        with torch.inference_mode(False):
            mixed = run.forward(fresh) + out_off
        run.backward(mixed)
        claims.append(
            _compare_grads(
                f"{method}: no gradient flows through the untracked term",
                run.grads(fresh),
                single,
                run,
            )
        )
        claims.extend(extra)
    return _result("tracking_off", run, claims, started)


def _untracked(
    run: _Run, copies: list[torch.Tensor], method: str
) -> tuple[torch.Tensor, list[Claim]]:
    """``fn`` with tracking turned off by ``method``, and that method's own claims."""
    extra: list[Claim] = []
    if method == "detach":
        first = run.positions[0]
        source = copies[first]
        detached = [x.detach() for x in copies]
        shares = detached[first].data_ptr() == source.data_ptr()
        probe = source.detach().clone()
        with torch.no_grad():
            detached[first].view(-1)[0] += 1.0
            visible = bool(source.view(-1)[0] == probe.view(-1)[0] + 1.0)
            source.copy_(probe)
        extra.append(
            Claim(
                "detach: shares storage with its source and does not require grad",
                shares and visible and not detached[first].requires_grad,
                f"same data_ptr={shares}, a write through the detached tensor visible in the "
                f"source={visible}, requires_grad={detached[first].requires_grad}",
            )
        )
        return run.forward(detached), extra
    if method == "requires_grad_":
        for x in run.differentiable(copies):
            x.requires_grad_(False)
        flags = [x.requires_grad for x in run.differentiable(copies)]
        leaves = [x.is_leaf for x in run.differentiable(copies)]
        extra.append(
            Claim(
                "requires_grad_(False): the tensor stays a leaf and stops requiring grad",
                not any(flags) and all(leaves),
                f"requires_grad={flags}, is_leaf={leaves}",
            )
        )
        return run.forward(copies), extra
    before = torch.is_grad_enabled()
    context = torch.no_grad() if method == "no_grad" else torch.inference_mode()
    with context:
        inside = torch.is_grad_enabled()
        out = run.forward(copies)
    restored = torch.is_grad_enabled() == before
    extra.append(
        Claim(
            f"{method}: grad mode is off inside and restored on exit",
            not inside and restored,
            f"is_grad_enabled inside={inside}, restored on exit={restored}",
        )
    )
    if method == "inference_mode":
        leaf = run.leaves()[run.positions[0]]
        refused = raises(
            lambda: (leaf.reshape(-1)[: out.numel()] * out.reshape(-1)[: leaf.numel()]).sum(),
            RuntimeError,
            INFERENCE_SAVE_FRAGMENT,
        )
        extra.append(
            Claim(
                "inference_mode: the output is an inference tensor",
                out.is_inference(),
                f"is_inference()={out.is_inference()}",
            )
        )
        extra.append(
            error_claim(
                "inference_mode: multiplying its output with a tracked tensor raises (torch "
                f"refuses to save it for backward: {INFERENCE_SAVE_FRAGMENT!r})",
                refused,
            )
        )
    return out, extra


# -- vector backward and retain_graph ----------------------------------------------------------


@recorded
def check_vector_backward(
    fn: Function,
    inputs: Any,
    *,
    cotangents: Cotangents = None,
    oracle: str = "finite_difference",
    expr: Any = None,
    seed: int = 0,
) -> SemanticsResult:
    """``y.backward(v)`` accumulates ``v^T J`` into ``.grad``, as an independent oracle computes
    it (``oracle``/``expr`` as in :func:`gradcheck.check_function`); for a non-scalar ``y``,
    ``y.backward()`` without ``v`` raises (torch's message: 'grad can be implicitly created only
    for scalar outputs')."""
    started = time.perf_counter()
    run = _Run(fn, inputs, cotangents, seed)
    claims = []
    copies = run.leaves()
    out = run.forward(copies)
    if out.numel() > 1:
        claims.append(
            error_claim(
                "backward() of a non-scalar output without a gradient raises RuntimeError",
                raises(lambda: out.backward(), RuntimeError, NON_SCALAR_FRAGMENT),
            )
        )
    run.backward(out)
    reference = oracle_gradient(
        fn,
        tuple(run.originals),
        oracle=oracle,
        expr=expr,
        cotangents=run.cotangent,
        seed=seed,
    )
    claims.append(
        _compare_grads(
            f"y.backward(v) puts v^T J ({reference.oracle}) into .grad",
            run.grads(copies),
            list(reference.values),
            run,
            oracle=reference.oracle,
            errors=list(reference.errors),
            bounds=(reference.lower, reference.upper),
        )
    )
    return _result("vector_backward", run, claims, started)


@recorded
def check_retain_graph(
    fn: Function, inputs: Any, *, cotangents: Cotangents = None, seed: int = 0
) -> SemanticsResult:
    """A graph that saved tensors for backward is freed by ``backward()``: a second call raises
    (torch's message: 'Trying to backward through the graph a second time'), and with
    ``retain_graph=True`` on the first call the second succeeds and accumulates twice the single
    gradient. A graph that saved nothing (``(x + 2).sum()``) can be walked twice; then the second
    call must accumulate exactly. Saved tensors are counted with
    ``torch.autograd.graph.saved_tensors_hooks`` (saved Python scalars, as in ``x * 3``, are not
    counted, but freeing them raises all the same)."""
    started = time.perf_counter()
    run = _Run(fn, inputs, cotangents, seed)
    single = run.single_gradient()
    saved = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += 1
        return tensor

    copies = run.leaves()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = run.forward(copies)
    run.backward(out)
    outcome = raises(lambda: run.backward(out), RuntimeError, FREED_GRAPH_FRAGMENT)
    claims = []
    if saved or outcome.matched:
        claims.append(
            error_claim(
                "a second backward without retain_graph raises (the graph was freed; "
                f"{saved} saved tensor(s) seen by saved_tensors_hooks)",
                outcome,
            )
        )
    else:
        claims.append(
            _compare_grads(
                "the graph saved nothing: a second backward is allowed and accumulates "
                f"2 x the single gradient (it {outcome.what.split(' (')[0]})",
                run.grads(copies),
                [2 * g for g in single],
                run,
            )
        )
    copies = run.leaves()
    out = run.forward(copies)
    run.backward(out, retain_graph=True)
    run.backward(out)
    claims.append(
        _compare_grads(
            "with retain_graph=True the second backward accumulates 2 x the single gradient",
            run.grads(copies),
            [2 * g for g in single],
            run,
        )
    )
    return _result("retain_graph", run, claims, started)
