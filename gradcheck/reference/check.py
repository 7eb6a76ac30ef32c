"""``check_against_reference`` and ``check_compiled``: a low-precision (or compiled)
implementation's outputs and gradients against a float64 golden value, with the reference's
own error in the same dtype as the yardstick (the gate of :mod:`gradcheck.reference.gate`).

Three runs share the inputs (rounded to the dtype), the weights and the seeded cotangents:

- golden: ``reference`` in float64, its gradients by autograd; before anything is judged the
  reference's own float64 gradient is checked by check_function (a module: check_module);
- baseline: ``reference`` in the dtype: what the dtype alone costs;
- candidate: ``fn`` in the dtype, run ``repeats`` times (a bitwise spread is reported).

Everything runs under the caller's state kept (RNG, grad mode, Python's and numpy's generators)
with TF32 off; modules are deep-copied, so the caller's modules and tensors are not touched.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gradcheck import messages, validation
from gradcheck.arguments import (
    differentiable_positions,
    function_name,
    given_cotangents,
    least_precise,
)
from gradcheck.check import check_function
from gradcheck.errors import InvalidArgument
from gradcheck.model.check import check_module
from gradcheck.model.settings import preserved_global_state
from gradcheck.recording import recorded
from gradcheck.reference import gate
from gradcheck.reference import rows as row_records
from gradcheck.reference.runs import (
    Run,
    Subject,
    Values,
    Wrap,
    cotangents,
    input_names,
    matching_parameters,
    module_weights,
    rounded_inputs,
    upcast,
)
from gradcheck.reference_results import ReferenceCheckResult, ReferenceRow
from gradcheck.status import FAILED, PASSED, overall
from gradcheck.tolerances import REFERENCE_MULTIPLIER

Inputs = torch.Tensor | Sequence[torch.Tensor]


@dataclass(frozen=True)
class _Setup:
    """The validated arguments of one check."""

    implementation: Subject
    reference: Subject
    run: Run
    dtype: torch.dtype
    cotangents: Any
    multiplier: float
    repeats: int
    deterministic: bool
    verify_reference: bool
    wrap: Wrap
    compiled: str
    labels: tuple[str, str]


@recorded
def check_against_reference(
    fn: Callable[..., Any],
    reference: Callable[..., Any],
    inputs: Inputs,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    cotangents: Any = None,
    multiplier: float = REFERENCE_MULTIPLIER,
    repeats: int = 2,
    deterministic: bool = False,
    module_mode: str = "eval",
    verify_reference: bool = True,
    seed: int = 0,
) -> ReferenceCheckResult:
    """Check ``fn`` (a kernel, a fused op, a module) in a low ``dtype`` against ``reference``.

    The golden value is ``reference`` in float64 at the inputs rounded to ``dtype`` (default:
    the inputs' least precise floating dtype), with its gradients by autograd for seeded
    cotangents (or ``cotangents``, one per output, rounded to ``dtype``). Each forward output,
    each differentiated input's gradient (those that require grad, else every floating input)
    and, when ``fn`` and ``reference`` are modules with the same parameters, each parameter's
    gradient gets a row: ``fn``'s error against the golden value, ``reference``'s own error in
    ``dtype``, their ratio and the verdict. A row passes when ``fn``'s error is at most
    ``multiplier`` times the larger of the reference's error and the dtype's floor, both
    normwise and elementwise. A non-finite value where the golden value is finite fails; a
    reference with no correct digit in ``dtype`` (ill-conditioned) makes the row inconclusive.

    ``fn`` runs ``repeats`` times: any bitwise difference between the runs is reported with its
    size, and fails when ``deterministic=True``. With ``verify_reference`` (the default) the
    reference's float64 gradient is itself checked first (check_function, or check_module for
    a module, ``module_mode`` "eval" or "train"); a reference that fails it is reported, and no
    gradient row is judged against it. ``device`` defaults to the inputs' device; modules are
    deep-copied and cast, and the reference module gets ``fn``'s weights (rounded to ``dtype``).

    Returns a :class:`~gradcheck.reference_results.ReferenceCheckResult`; call
    ``.raise_for_failure()`` to turn a failure into :class:`~gradcheck.GradientMismatch`.
    """
    setup = _setup(
        fn,
        reference,
        inputs,
        dtype,
        device,
        cotangents,
        multiplier,
        repeats,
        deterministic,
        module_mode,
        verify_reference,
        seed,
        wrap=_identity,
        compiled="",
    )
    return _check(setup, "check_against_reference")


@recorded
def check_compiled(
    fn: Callable[..., Any],
    inputs: Inputs,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    backend: str | Callable[..., Any] = "inductor",
    cotangents: Any = None,
    multiplier: float = REFERENCE_MULTIPLIER,
    repeats: int = 2,
    deterministic: bool = False,
    module_mode: str = "eval",
    verify_reference: bool = True,
    seed: int = 0,
    **compile_kwargs: Any,
) -> ReferenceCheckResult:
    """:func:`check_against_reference` with ``torch.compile(fn, backend=backend,
    **compile_kwargs)`` as the implementation and ``fn`` itself, eager, as the reference.

    A module is deep-copied and cast to ``dtype`` before it is compiled; the result's
    ``first_call_s`` is the compiled side's first forward and backward, compilation included.
    """
    name = backend if isinstance(backend, str) else getattr(backend, "__name__", "callable")
    if not callable(backend):
        validation.one_of("backend", backend, (*torch.compiler.list_backends(exclude_tags=()),))

    def compiled(call: Callable[..., Any]) -> Callable[..., Any]:
        return torch.compile(call, backend=backend, **compile_kwargs)  # type: ignore[no-any-return]

    setup = _setup(
        fn,
        fn,
        inputs,
        dtype,
        device,
        cotangents,
        multiplier,
        repeats,
        deterministic,
        module_mode,
        verify_reference,
        seed,
        wrap=compiled,
        compiled=name,
    )
    return _check(setup, "check_compiled")


def _identity(call: Callable[..., Any]) -> Callable[..., Any]:
    return call


def _setup(
    fn: Callable[..., Any],
    reference: Callable[..., Any],
    inputs: Inputs,
    dtype: torch.dtype | None,
    device: str | torch.device | None,
    given: Any,
    multiplier: float,
    repeats: int,
    deterministic: bool,
    module_mode: str,
    verify_reference: bool,
    seed: int,
    *,
    wrap: Wrap,
    compiled: str,
) -> _Setup:
    """Every argument checked, the check's dtype and device settled, the runs' shared inputs."""
    validation.callable_fn(fn)
    validation.callable_fn(reference, "reference")
    seed = validation.seed(seed)
    repeats = validation.positive_int("repeats", repeats, "2")
    module_mode = validation.one_of("module_mode", module_mode, ("eval", "train"))
    multiplier = gate.validated_multiplier(multiplier)
    arguments = validation.tensor_tuple(inputs)
    chosen = _dtype(dtype, arguments, fn)
    place = _device(device, arguments)
    weights = None
    if isinstance(fn, torch.nn.Module):
        weights = module_weights(fn, chosen)
        if isinstance(reference, torch.nn.Module) and reference is not fn:
            matching_parameters(fn, reference)
    implementation = Subject(fn, module_mode)
    positions = tuple(_positions(arguments))
    labels = (_label(fn), _label(reference))
    run = Run(
        inputs=rounded_inputs(arguments, chosen, place),
        positions=positions,
        names=input_names(implementation, len(arguments)),
        device=place,
        seed=seed,
        label=labels[0],
    )
    return _Setup(
        implementation=implementation,
        reference=Subject(reference, module_mode, weights),
        run=run,
        dtype=chosen,
        cotangents=given,
        multiplier=multiplier,
        repeats=repeats,
        deterministic=bool(deterministic),
        verify_reference=bool(verify_reference),
        wrap=wrap,
        compiled=compiled,
        labels=labels,
    )


def _label(fn: Callable[..., Any]) -> str:
    return type(fn).__name__ if isinstance(fn, torch.nn.Module) else function_name(fn)


def _positions(arguments: tuple[torch.Tensor, ...]) -> list[int]:
    """:func:`~gradcheck.arguments.differentiable_positions`, or none (a module whose inputs
    are all integer, an embedding's indices, is still checked on its parameters)."""
    if not any(a.is_floating_point() for a in arguments):
        return []
    return differentiable_positions(arguments)


def _dtype(
    dtype: torch.dtype | None, arguments: tuple[torch.Tensor, ...], fn: Callable[..., Any]
) -> torch.dtype:
    """The check's dtype: the one given, else the inputs' (or a module's parameters')."""
    if dtype is not None:
        return validation.floating_dtype(dtype)
    floating = [a.dtype for a in arguments if a.is_floating_point()]
    if not floating and isinstance(fn, torch.nn.Module):
        floating = [p.dtype for p in fn.parameters() if p.is_floating_point()]
    if not floating:
        raise InvalidArgument(
            "Got no floating-point input (and no floating parameter) to take the dtype from. "
            "Pass dtype=torch.bfloat16 (or float16, float32)."
        )
    return least_precise(floating)


def _device(device: str | torch.device | None, arguments: tuple[torch.Tensor, ...]) -> Any:
    if device is None:
        return arguments[0].device
    return validation.available_device(device)


def _check(setup: _Setup, check: str) -> ReferenceCheckResult:
    start = time.perf_counter()
    with preserved_global_state(setup.run.device):
        chosen: dict[str, list[torch.Tensor | None]] = {}

        def pick(outputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor | None]:
            if "v" not in chosen:
                given = given_cotangents(setup.cotangents, outputs)
                chosen["v"] = cotangents(outputs, given, setup.dtype, setup.run.seed)
            return chosen["v"]

        truth, truth_parameters = setup.reference.prepared(torch.float64, setup.run.device)
        golden = setup.run.evaluate(truth, truth_parameters, torch.float64, pick)
        verified = _verify_reference(setup, truth)
        baseline = setup.run.evaluate(
            *setup.reference.prepared(setup.dtype, setup.run.device), setup.dtype, pick
        )
        call, parameters = setup.implementation.prepared(setup.dtype, setup.run.device)
        call = setup.wrap(call)
        first_started = time.perf_counter()
        runs = [setup.run.evaluate(call, parameters, setup.dtype, pick)]
        first_call_s = time.perf_counter() - first_started
        runs += [
            setup.run.evaluate(call, parameters, setup.dtype, pick)
            for _ in range(setup.repeats - 1)
        ]
    rows = tuple(_rows(setup, golden, baseline, runs, verified))
    reproduce = _reproduce(setup, check)
    statuses = [row.status for row in rows]
    status = FAILED if verified.status == FAILED else overall(statuses)
    return ReferenceCheckResult(
        passed=status == PASSED,
        status=status,
        implementation=setup.labels[0],
        reference=setup.labels[1],
        dtype=str(setup.dtype).removeprefix("torch."),
        device=str(setup.run.device),
        compiled=setup.compiled,
        multiplier=setup.multiplier,
        repeats=setup.repeats,
        deterministic=setup.deterministic,
        nondeterministic=any(row.spread > 0 for row in rows),
        seed=setup.run.seed,
        reference_check=verified.status,
        reference_note=verified.note,
        rows=rows,
        message=messages.reference_message(
            _subject(setup, check),
            [row_records.shown(row) for row in rows],
            verified.status,
            verified.note,
            setup.multiplier,
            reproduce,
        ),
        reproduce=reproduce,
        first_call_s=first_call_s,
        duration_s=time.perf_counter() - start,
    )


def _verify_reference(setup: _Setup, module: Callable[..., Any]) -> row_records.Verification:
    """The reference's own float64 gradient (``module``: the reference prepared in float64),
    checked by check_function (check_module for a module, whose rows name the same tensors as
    ours; it works on a copy)."""
    if not setup.verify_reference:
        return row_records.Verification(
            "skipped", "verify_reference=False: the reference's gradient is trusted unchecked"
        )
    inputs = upcast(setup.run.inputs)
    if isinstance(module, torch.nn.Module):
        result: Any = check_module(
            module,
            inputs,
            dtype=torch.float64,
            device=setup.run.device,
            mode=setup.reference.mode,
            inputs_to_check=list(setup.run.positions),
            include_inputs=bool(setup.run.positions),
            seed=setup.run.seed,
        )
    else:
        leaves = tuple(
            a.clone().requires_grad_(i in setup.run.positions) if a.is_floating_point() else a
            for i, a in enumerate(inputs)
        )
        result = check_function(module, leaves, seed=setup.run.seed, progress=False)
    return row_records.verification(result, by_tensor=isinstance(module, torch.nn.Module))


def _rows(
    setup: _Setup,
    golden: Values,
    baseline: Values,
    runs: list[Values],
    verified: row_records.Verification,
) -> list[ReferenceRow]:
    both_modules = setup.implementation.is_module and setup.reference.is_module
    rows = []
    for name, truth in golden.tensors.items():
        kind = golden.kinds[name]
        values = [run.tensors.get(name) for run in runs]
        if kind == "parameter" and not both_modules:
            continue  # only one side has it: there is nothing to compare it with
        golden64 = truth.double()
        row = _row(setup, name, kind, golden64, baseline.tensors[name], values)
        if kind != "output":
            row = row_records.capped(row, verified)
        rows.append(row)
    return rows


def _row(
    setup: _Setup,
    name: str,
    kind: str,
    golden: torch.Tensor,
    baseline: torch.Tensor,
    values: list[torch.Tensor | None],
) -> ReferenceRow:
    label = name if kind == "output" else f"the gradient of {name}"
    present = [v for v in values if v is not None and tuple(v.shape) == tuple(golden.shape)]
    base = gate.errors(baseline, golden)
    if len(present) < len(values):
        shape = next((tuple(v.shape) for v in values if v is not None), None)
        problem = "is missing" if shape is None else f"has shape {shape}"
        note = f"{label} {problem}, but the reference's has shape {tuple(golden.shape)}"
        return row_records.record(
            name, kind, golden, setup.dtype, setup.multiplier, (FAILED, note), (None, base), 0.0
        )
    each = [gate.errors(v, golden) for v in present]
    worst = gate.Errors(
        normwise=max(e.normwise for e in each),
        elementwise=max(e.elementwise for e in each),
        nonfinite=max(e.nonfinite for e in each),
        first_nonfinite=next((e.first_nonfinite for e in each if e.nonfinite), None),
    )
    verdict = gate.judge(worst, base, setup.dtype, setup.multiplier, label)
    spread = row_records.spread(present, golden)
    status, note = verdict.status, verdict.note
    if spread > 0:
        spread_note = f"nondeterministic: {len(present)} runs differ by up to {spread:.2g} normwise"
        if setup.deterministic:
            status = FAILED
            note = "; ".join(filter(None, [note, f"{spread_note} (deterministic=True)"]))
        else:
            note = "; ".join(filter(None, [note, spread_note]))
    return row_records.record(
        name, kind, golden, setup.dtype, setup.multiplier, (status, note), (worst, base), spread
    )


def _subject(setup: _Setup, check: str) -> str:
    sides = (
        f"{setup.labels[0]} vs {setup.labels[1]}"
        if check != "check_compiled"
        else (f"{setup.labels[0]} compiled with {setup.compiled!r} vs eager")
    )
    return messages.subject(
        check, sides, f"{str(setup.dtype).removeprefix('torch.')}, {setup.run.device}"
    )


def _reproduce(setup: _Setup, check: str) -> str:
    dtype = f"dtype=torch.{str(setup.dtype).removeprefix('torch.')}"
    seed = f"seed={setup.run.seed}"
    if check == "check_compiled":
        backend = f"backend={setup.compiled!r}"
        return f"gradcheck.check_compiled({setup.labels[0]}, inputs, {dtype}, {backend}, {seed})"
    return (
        f"gradcheck.check_against_reference({setup.labels[0]}, {setup.labels[1]}, inputs, "
        f"{dtype}, {seed})"
    )
