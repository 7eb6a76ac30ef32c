"""``check_module``: autograd's gradient of a scalar loss of a module's output, checked tensor by
tensor (every parameter and differentiated input) along seeded random directions, in the order
forward first uses each tensor.

The loss is by default a seeded random projection of the outputs, so every output element
matters. Everything runs on a deep copy (:mod:`gradcheck.model.workspace`); each tensor's row is
decided by :mod:`gradcheck.model.rows`. Before any row is trusted the module must be a function
of its inputs (the unperturbed point evaluated at the start, after autograd's pass, in every
batch and after the rows gives one value) and its backward reentrant (two runs agree to
``nondet_tol``). The caller's module, tensors, global RNG states (torch's, Python's, numpy's),
grad mode and TF32 flags are left as they were.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from gradcheck import messages
from gradcheck.errors import InvalidArgument
from gradcheck.model.rows import ZERO_GRADIENT_NOTE, check_target, rounding_magnitude
from gradcheck.model.settings import (
    Settings,
    differentiated_inputs,
    module_inputs,
    preserved_global_state,
    select_parameters,
)
from gradcheck.model.workspace import Gradients, NotAFunction, Target, Workspace
from gradcheck.model_results import ModuleCheckResult, ModuleRow
from gradcheck.recording import recorded
from gradcheck.status import FAILED, INCONCLUSIVE, PASSED, overall
from gradcheck.tolerances import Tolerance, resolve_tolerance

ProgressCallback = Callable[[ModuleRow, int, int], None]
"""Called after each row with the row, the number of rows done and the total."""

_AT_THE_CENTER = "evaluating the module in float64 at the inputs given (the oracle's center)"
_AGAIN = "evaluating the module in float64 at the inputs given again (to confirm it repeats)"


@recorded
def check_module(
    module: torch.nn.Module,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    *,
    loss: Callable[[Any], torch.Tensor] | None = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device | None = None,
    parameters: str | Sequence[str] | None = None,
    include_inputs: bool = True,
    inputs_to_check: Sequence[int] | None = None,
    mode: str = "eval",
    directions: int = 2,
    seed: int = 0,
    atol: float | None = None,
    rtol: float | None = None,
    nondet_tol: float = 0.0,
    progress: ProgressCallback | None = None,
) -> ModuleCheckResult:
    """Check autograd's gradient of a scalar loss with respect to every parameter tensor.

    ``loss(output) -> scalar tensor`` defaults to a fixed random projection of the outputs
    (seeded by ``seed``). ``dtype`` is the dtype autograd runs in; the oracle always runs in
    float64. ``parameters`` picks tensors by name or glob pattern (``"layer1.*"``); by default
    every parameter with ``requires_grad``. ``include_inputs`` adds a row per differentiated
    input: the positions in ``inputs_to_check`` when given, else (as torch.autograd.gradcheck)
    the floating-point inputs that require grad, else every floating-point input torch can
    differentiate. ``mode`` is ``"eval"`` (running statistics) or ``"train"`` (batch
    statistics, dropout with a fixed mask). Each row is checked along ``directions`` random
    directions; ``atol``/``rtol`` override the float64 finite-difference table row. Backward
    runs twice, and a tensor whose two gradients differ by more than ``nondet_tol`` fails (the
    backward is not reentrant). ``progress`` is called after every row.

    A module that is not a function of its inputs (numpy or Python randomness, a call counter,
    output shapes that change) gets inconclusive rows, never passed ones.

    Returns a :class:`~gradcheck.ModuleCheckResult`; call ``.raise_for_failure()`` to turn a
    failed row into :class:`~gradcheck.GradientMismatch`.
    """
    start = time.perf_counter()
    settings = Settings.validated(
        module,
        dtype=dtype,
        device=device,
        mode=mode,
        directions=directions,
        seed=seed,
        nondet_tol=nondet_tol,
    )
    arguments = module_inputs(inputs)
    names = select_parameters(module, parameters)
    positions, guessed = differentiated_inputs(arguments, include_inputs, inputs_to_check)
    if not names and not positions:
        raise InvalidArgument(
            f"Got a {type(module).__name__} with no parameters to check and no floating-point "
            "input to differentiate (parameters selected: none; include_inputs="
            f"{include_inputs}). Pass a module with parameters, parameters=None to check all of "
            "them, or a floating-point input with include_inputs=True."
        )
    tolerance = resolve_tolerance(settings.dtype, "finite_difference", atol=atol, rtol=rtol)
    done: list[ModuleRow] = []
    targets: list[Target] = []
    impure: str | None = None
    with preserved_global_state(settings.device):
        workspace = Workspace(module, arguments, settings, loss)
        try:
            _check_rows(workspace, names, (positions, guessed), tolerance, progress, done, targets)
        except NotAFunction as exc:
            impure = messages.module_not_a_function(exc.cause)
            if not targets:
                targets = workspace.targets(names, positions)
            done = _undecided_rows(targets, done, impure)
    call = _reproduce(settings, parameters, inputs_to_check)
    return _module_result(module, settings, tolerance, tuple(done), workspace, call, start, impure)


def _check_rows(
    workspace: Workspace,
    names: list[str],
    inputs: tuple[list[int], bool],
    tolerance: Tolerance,
    progress: ProgressCallback | None,
    done: list[ModuleRow],
    targets: list[Target],
) -> None:
    """Every row, into ``done`` (``targets`` gets the tensors in row order). The unperturbed
    point is evaluated first (recording forward order and precision), again after autograd's
    pass and again after the rows; ``NotAFunction`` escapes when two evaluations differ."""
    observed = workspace.center_loss(_AT_THE_CENTER, observe=True)
    workspace.confirm_center(workspace.adopt_oracle_layout(observed, _AT_THE_CENTER), "")
    gradients, positions = _gradients(workspace, names, *inputs)
    again = workspace.center_loss(_AGAIN)
    workspace.confirm_center(again, "before and after autograd's forward and backward")
    targets.extend(workspace.targets(names, positions))
    # The noise is measured along an input where there is one (a parameter with a jump at the
    # point, such as sign(w) at w = 0, would read the jump as noise for every row).
    noise_target = next((t for t in targets if t.kind == "input"), targets[0])
    magnitude = rounding_magnitude(workspace, noise_target, gradients)
    for index, target in enumerate(targets):
        row = check_target(target, gradients.tensors[target.name], workspace, magnitude, tolerance)
        done.append(_reentrancy_checked(row, gradients, workspace.settings.nondet_tol))
        if progress is not None:
            progress(done[-1], index + 1, len(targets))
    last = workspace.center_loss(_AGAIN)
    workspace.confirm_center(last, "before the first row and after the last")


def _gradients(
    workspace: Workspace, names: list[str], positions: list[int], guessed: bool
) -> tuple[Gradients, list[int]]:
    """Autograd's gradients, and the inputs they are for. When the inputs were guessed (none
    requires grad) and autograd raises, the inputs it cannot differentiate (a loss's target)
    are left out; an exception that remains is an InvalidArgument saying what was running."""
    stage = (
        f"running autograd's forward and backward in {workspace.settings.dtype_name} at the "
        "inputs given (twice, to confirm backward repeats)"
    )
    try:
        return workspace.autograd(names, positions), positions
    except (NotAFunction, InvalidArgument):
        raise
    except Exception as exc:
        if not guessed:
            raise InvalidArgument(messages.module_raised(stage, exc)) from exc
        first = exc
    kept = [p for p in positions if _differentiable(workspace, p)]
    if not names and not kept:
        raise InvalidArgument(messages.module_raised(stage, first)) from first
    try:
        return workspace.autograd(names, kept), kept
    except (NotAFunction, InvalidArgument):
        raise
    except Exception as exc:
        raise InvalidArgument(messages.module_raised(stage, exc)) from exc


def _differentiable(workspace: Workspace, position: int) -> bool:
    """Whether autograd runs with respect to this input alone."""
    try:
        workspace.autograd([], [position])
    except NotAFunction:
        raise
    except Exception:
        return False
    return True


def _reentrancy_checked(row: ModuleRow, gradients: Gradients, nondet_tol: float) -> ModuleRow:
    """The row, failed when two runs of the same backward gave its tensor gradients further
    apart than ``nondet_tol``."""
    gap = gradients.reentrancy.get(row.name, 0.0)
    if gap <= nondet_tol:
        return row
    return dataclasses.replace(
        row, status=FAILED, note=messages.module_not_reentrant(row.name, gap, nondet_tol)
    )


def _undecided_rows(targets: list[Target], done: list[ModuleRow], note: str) -> list[ModuleRow]:
    """Every target's row inconclusive with ``note``: finished rows keep their numbers."""
    finished = {row.name: row for row in done}
    rows = []
    for target in targets:
        row = finished.get(target.name)
        if row is None:
            row = ModuleRow(
                name=target.name,
                kind=target.kind,
                shape=tuple(target.base.shape),
                numel=target.base.numel(),
                status=INCONCLUSIVE,
                autograd=math.nan,
                oracle=math.nan,
                relative_error=math.nan,
                error_estimate=math.inf,
                allowed=math.nan,
                rule="",
                step=math.nan,
                directions=0,
                attempts=0,
            )
        rows.append(dataclasses.replace(row, status=INCONCLUSIVE, directions=0, note=note))
    return rows


def _reproduce(settings: Settings, parameters: object, inputs_to_check: object) -> str:
    """The call that repeats this check."""
    extra = "" if parameters is None else f", parameters={parameters!r}"
    if inputs_to_check is not None:
        extra += f", inputs_to_check={tuple(inputs_to_check)!r}"  # type: ignore[arg-type]
    if settings.nondet_tol:
        extra += f", nondet_tol={settings.nondet_tol!r}"
    return (
        f"gradcheck.check_module(module, inputs, dtype=torch.{settings.dtype_name}, "
        f"device={str(settings.device)!r}, mode={settings.mode!r}, "
        f"directions={settings.directions}, seed={settings.seed}{extra})"
    )


def _module_result(
    module: torch.nn.Module,
    settings: Settings,
    tolerance: Tolerance,
    rows: tuple[ModuleRow, ...],
    workspace: Workspace,
    reproduce: str,
    start: float,
    impure: str | None,
) -> ModuleCheckResult:
    failed = [row for row in rows if row.status == FAILED]
    status = overall([row.status for row in rows])
    loss = workspace.loss
    return ModuleCheckResult(
        passed=status == PASSED,
        status=status,
        module=type(module).__name__,
        dtype=settings.dtype_name,
        device=str(settings.device),
        mode=settings.mode,
        loss="seeded random projection of the outputs"
        if loss is None
        else getattr(loss, "__name__", type(loss).__name__),
        seed=settings.seed,
        directions=settings.directions,
        tolerance=tolerance,
        rows=rows,
        likely_culprit=failed[-1].name if failed else None,
        message=_module_message(module, settings, rows, failed, reproduce, impure),
        reproduce=reproduce,
        evaluations=workspace.evaluations,
        duration_s=time.perf_counter() - start,
    )


def _module_message(
    module: torch.nn.Module,
    settings: Settings,
    rows: tuple[ModuleRow, ...],
    failed: list[ModuleRow],
    reproduce: str,
    impure: str | None,
) -> str:
    details = f"{settings.dtype_name}, {settings.device}, {settings.mode} mode"
    label = messages.subject("check_module", type(module).__name__, details)
    lines: list[str]
    if impure is not None:
        lines = [f"{label}: none of {len(rows)} rows decided: {impure}"]
    elif failed:
        lines = [f"Gradient mismatch: {label}: {len(failed)} of {len(rows)} rows fail"]
        shown = [
            messages.module_row_failure(
                row.name,
                row.shape,
                row.note,
                row.autograd,
                row.oracle,
                row.error_estimate,
                row.relative_error,
                row.allowed,
            )
            for row in failed
        ]
        lines += messages.listed(shown, messages.SHOWN_ROWS)
        culprit = failed[-1]
        after = rows[rows.index(culprit) + 1 :]
        downstream = next((row.name for row in after if row.passed), None)
        lines.append(messages.likely_culprit(culprit.name, downstream))
    else:
        passed = sum(r.passed for r in rows)
        lines = [f"{label}: {passed} of {len(rows)} rows pass"]
        decided = [r for r in rows if r.passed]
        if decided:
            worst = max(decided, key=lambda r: r.tolerance_used)
            lines[0] += (
                f"; closest to its tolerance: {worst.name} ({worst.tolerance_used:.0%} used, "
                f"relative error {worst.relative_error:.1e})"
            )
        lines += [f"  {row.status}: {row.name}: {row.note}" for row in rows if not row.passed]
    zero = [row.name for row in rows if row.note == ZERO_GRADIENT_NOTE]
    if zero:
        lines.append(messages.zero_gradient_rows(zero, len(rows)))
    lines.append(messages.reproduce_line(reproduce))
    return "\n".join(lines)
