"""``check_device_parity``: every parameter's full gradient on other devices (CUDA) against the
CPU float64 reference, normwise, with the same copy of the module, inputs, loss and RNG seed on
each device and TF32 off."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gradcheck import messages, validation
from gradcheck.errors import InvalidArgument
from gradcheck.judge import judge_element
from gradcheck.model.settings import (
    Settings,
    input_positions,
    module_inputs,
    preserved_global_state,
    select_parameters,
)
from gradcheck.model.workspace import Gradients, Workspace
from gradcheck.model_results import DeviceParityResult, ParityRow
from gradcheck.recording import recorded
from gradcheck.status import FAILED, PASSED, SKIPPED
from gradcheck.tolerances import Tolerance, parity_limit, parity_tolerance


@dataclass(frozen=True)
class _Run:
    """One module, its inputs, the tensors to compare and how the loss is formed."""

    module: torch.nn.Module
    arguments: tuple[torch.Tensor, ...]
    names: list[str]
    positions: list[int]
    loss: Callable[[Any], torch.Tensor] | None
    mode: str
    seed: int

    def gradients(self, dtype: torch.dtype, device: torch.device) -> Gradients:
        """Autograd's gradients of the loss in ``dtype`` on ``device``."""
        settings = Settings.validated(
            self.module, dtype=dtype, device=device, mode=self.mode, directions=1, seed=self.seed
        )
        with preserved_global_state(settings.device):
            workspace = Workspace(self.module, self.arguments, settings, self.loss)
            return workspace.autograd(self.names, self.positions)


@recorded
def check_device_parity(
    module: torch.nn.Module,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    devices: Sequence[str] = ("cpu", "cuda"),
    *,
    dtype: torch.dtype = torch.float64,
    loss: Callable[[Any], torch.Tensor] | None = None,
    mode: str = "eval",
    parameters: str | Sequence[str] | None = None,
    include_inputs: bool = True,
    seed: int = 0,
) -> DeviceParityResult:
    """Compare every parameter's gradient on each device (in ``dtype``) with CPU float64.

    The same copy of the module, inputs, loss and RNG seed run on each device with TF32 off;
    each tensor's gradient must be within the normwise tolerance of
    :data:`gradcheck.tolerances.PARITY_TOLERANCES` for the dtype, or, below float64, within
    :data:`~gradcheck.tolerances.PARITY_BASELINE_FACTOR` times the CPU's own error in that
    dtype (so the dtype's rounding is not blamed on the device). A device that is not
    available (CUDA on a machine without a GPU) is skipped with the reason; when every device
    is skipped the result's status is ``"skipped"``. In ``mode="train"`` modules with Dropout
    draw different masks on different devices, so use ``mode="eval"`` for those.
    """
    start = time.perf_counter()
    if isinstance(devices, str) or not devices:
        raise InvalidArgument(
            f"Got devices={devices!r}, but devices must be a non-empty sequence of device "
            "names such as ('cpu', 'cuda')."
        )
    reference = Settings.validated(
        module, dtype=torch.float64, device="cpu", mode=mode, directions=1, seed=seed
    )
    arguments = module_inputs(inputs)
    positions = input_positions(arguments) if include_inputs else []
    run = _Run(
        module,
        arguments,
        select_parameters(module, parameters),
        positions,
        loss,
        reference.mode,
        seed,
    )
    allowed = parity_tolerance(dtype)
    truth = run.gradients(torch.float64, reference.device)
    rows, skipped = _compare_devices(run, truth, devices, dtype, allowed)
    failed = [row for row in rows if not row.passed]
    status = FAILED if failed else PASSED if rows else SKIPPED
    label = messages.subject(
        "check_device_parity", type(module).__name__, f"{str(dtype)[6:]} vs cpu float64"
    )
    return DeviceParityResult(
        passed=status == PASSED,
        status=status,
        module=type(module).__name__,
        dtype=str(dtype).removeprefix("torch."),
        mode=reference.mode,
        reference="cpu float64",
        devices=tuple(sorted({row.device for row in rows})),
        rows=tuple(rows),
        skipped=tuple(skipped),
        message=messages.parity_message(
            label, [_shown(r) for r in rows], [_shown(r) for r in failed], skipped
        ),
        seed=seed,
        duration_s=time.perf_counter() - start,
    )


def _compare_devices(
    run: _Run, truth: Gradients, devices: Sequence[str], dtype: torch.dtype, allowed: float
) -> tuple[list[ParityRow], list[tuple[str, str]]]:
    """Rows for every device that can run, and the reason for each that cannot."""
    rows: list[ParityRow] = []
    skipped: list[tuple[str, str]] = []
    baseline: Gradients | None = None  # the CPU in ``dtype``: what the dtype alone costs
    for requested in devices:
        reason = validation.unavailable_device(requested)
        if reason:
            skipped.append((str(requested), reason))
            continue
        target = torch.device(requested)
        if target.type == "cpu" and dtype == torch.float64:
            continue  # The reference itself.
        measured = run.gradients(dtype, target)
        if target.type == "cpu":
            baseline = measured
        elif dtype != torch.float64 and baseline is None:
            baseline = run.gradients(dtype, torch.device("cpu"))
        floor = None if target.type == "cpu" else baseline
        rows.extend(parity_rows(truth, measured, str(target), allowed, floor))
    return rows, skipped


def _shown(row: ParityRow) -> tuple[str, str, float, float, float]:
    return row.name, row.device, row.relative_error, row.allowed, row.max_abs_error


def normwise(value: torch.Tensor, reference: torch.Tensor) -> float:
    """``||value - reference|| / ||reference||`` (the plain norm when the reference is 0)."""
    scale = float(reference.norm())
    error = float((value.cpu() - reference).norm())
    return error / scale if scale > 0 else error


def parity_rows(
    truth: Gradients,
    measured: Gradients,
    device: str,
    allowed: float,
    baseline: Gradients | None,
) -> list[ParityRow]:
    """One row per tensor, judged normwise against :func:`~gradcheck.tolerances.parity_limit`
    (with a ``baseline``, the CPU in the same dtype, a device may also be as far from float64
    as that factor times the CPU's own error)."""
    rows = []
    for name, reference in truth.tensors.items():
        difference = measured.tensors[name].cpu() - reference
        relative = normwise(measured.tensors[name], reference)
        own = None if baseline is None else normwise(baseline.tensors[name], reference)
        limit = parity_limit(allowed, own)
        verdict = judge_element(
            relative, Tolerance(atol=limit, rtol=0.0, error_factor=0.0), oracle=0.0
        )
        rows.append(
            ParityRow(
                name=name,
                device=device,
                shape=tuple(reference.shape),
                max_abs_error=float(difference.abs().max()) if difference.numel() else 0.0,
                relative_error=relative,
                allowed=limit,
                passed=verdict.status == PASSED,
            )
        )
    return rows
