"""``check_module``: autograd's gradient of a scalar loss of a module's output, checked tensor by
tensor (every parameter and input) along seeded random directions, in forward order.

The loss is by default a seeded random projection of the outputs, so every output element
matters. Everything runs on a deep copy (:mod:`gradcheck.model.workspace`); each tensor's row is
decided by :mod:`gradcheck.model.rows`. The caller's module, tensors, global RNG states, grad
mode and TF32 flags are left as they were.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from gradcheck import messages
from gradcheck.errors import InvalidArgument
from gradcheck.model.rows import ZERO_GRADIENT_NOTE, check_target, rounding_magnitude
from gradcheck.model.settings import (
    Settings,
    input_positions,
    module_inputs,
    preserved_global_state,
    select_parameters,
)
from gradcheck.model.workspace import Workspace
from gradcheck.model_results import ModuleCheckResult, ModuleRow
from gradcheck.recording import recorded
from gradcheck.status import FAILED, INCOMPLETE, PASSED
from gradcheck.tolerances import Tolerance, resolve_tolerance

ProgressCallback = Callable[[ModuleRow, int, int], None]
"""Called after each row with the row, the number of rows done and the total."""


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
    mode: str = "eval",
    directions: int = 2,
    seed: int = 0,
    atol: float | None = None,
    rtol: float | None = None,
    progress: ProgressCallback | None = None,
) -> ModuleCheckResult:
    """Check autograd's gradient of a scalar loss with respect to every parameter tensor.

    ``loss(output) -> scalar tensor`` defaults to a fixed random projection of the outputs
    (seeded by ``seed``). ``dtype`` is the dtype autograd runs in; the oracle always runs in
    float64. ``parameters`` picks tensors by name or glob pattern (``"layer1.*"``); by default
    every parameter with ``requires_grad``. ``include_inputs`` adds a row per floating-point
    input. ``mode`` is ``"eval"`` (running statistics) or ``"train"`` (batch statistics,
    dropout with a fixed mask). Each row is checked along ``directions`` random directions;
    ``atol``/``rtol`` override the float64 finite-difference table row. ``progress`` is called
    after every row.

    Returns a :class:`~gradcheck.ModuleCheckResult`; call ``.raise_for_failure()`` to turn a
    failed row into :class:`~gradcheck.GradientMismatch`.
    """
    start = time.perf_counter()
    settings = Settings.validated(
        module, dtype=dtype, device=device, mode=mode, directions=directions, seed=seed
    )
    arguments = module_inputs(inputs)
    names = select_parameters(module, parameters)
    positions = input_positions(arguments) if include_inputs else []
    if not names and not positions:
        raise InvalidArgument(
            f"Got a {type(module).__name__} with no parameters to check and no floating-point "
            "input to differentiate (parameters selected: none; include_inputs="
            f"{include_inputs}). Pass a module with parameters, parameters=None to check all of "
            "them, or a floating-point input with include_inputs=True."
        )
    tolerance = resolve_tolerance(settings.dtype, "finite_difference", atol=atol, rtol=rtol)
    with preserved_global_state(settings.device):
        workspace = Workspace(module, arguments, settings, loss)
        gradients = workspace.autograd(names, positions)
        targets = workspace.targets(names, positions)
        magnitude = rounding_magnitude(workspace, targets[0], gradients)
        rows: list[ModuleRow] = []
        for index, target in enumerate(targets):
            tensor = gradients.tensors[target.name]
            rows.append(check_target(target, tensor, workspace, magnitude, tolerance))
            if progress is not None:
                progress(rows[-1], index + 1, len(targets))
    return _module_result(module, settings, tolerance, tuple(rows), workspace, parameters, start)


def _module_result(
    module: torch.nn.Module,
    settings: Settings,
    tolerance: Tolerance,
    rows: tuple[ModuleRow, ...],
    workspace: Workspace,
    parameters: object,
    start: float,
) -> ModuleCheckResult:
    failed = [row for row in rows if row.status == FAILED]
    status = FAILED if failed else PASSED if all(r.passed for r in rows) else INCOMPLETE
    selection = "" if parameters is None else f", parameters={parameters!r}"
    reproduce = (
        f"gradcheck.check_module(module, inputs, dtype=torch.{settings.dtype_name}, "
        f"device={str(settings.device)!r}, mode={settings.mode!r}, "
        f"directions={settings.directions}, seed={settings.seed}{selection})"
    )
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
        message=_module_message(module, settings, rows, failed, reproduce),
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
) -> str:
    details = f"{settings.dtype_name}, {settings.device}, {settings.mode} mode"
    label = messages.subject("check_module", type(module).__name__, details)
    lines: list[str]
    if failed:
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
