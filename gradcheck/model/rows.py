"""One row of a module check: a tensor's gradient along seeded random directions against the
kink-aware directional finite differences of :mod:`gradcheck.oracles.directional`.

Each direction ``u`` compares autograd's ``grad . u`` with the oracle's ``d/dt L(theta + t*u)``
through the one judge (:func:`gradcheck.judge.judge_element`). A direction that crosses a
switch point (ReLU, max-pool) within the smallest step is replaced by a fresh one; a row is
``kink-affected`` (not failed) only when every direction did that and autograd's value lies
between the one-sided derivatives.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from gradcheck.judge import Verdict, judge_element
from gradcheck.model.workspace import Gradients, Target, Workspace
from gradcheck.model_results import ModuleRow
from gradcheck.oracles.directional import (
    DirectionalEstimate,
    directional_derivative,
    initial_steps,
)
from gradcheck.oracles.noise import NOISE_STEPS, measured_rounding_magnitude
from gradcheck.status import FAILED, INCONCLUSIVE, KINK, KINK_AFFECTED, PASSED
from gradcheck.tolerances import AUTOGRAD_ROUNDING_FACTOR, Tolerance

ZERO_GRADIENT_NOTE = (
    "autograd's gradient is exactly 0 for every element and the oracle agrees: nothing reaches "
    "this tensor here (a zero-initialised layer downstream, dead units), so the row proves little"
)

MAX_ATTEMPTS_PER_DIRECTION = 3
"""A direction that crossed a switch point is replaced; each row tries at most this many
directions per requested direction."""

_ROW_STATUS = {PASSED: PASSED, FAILED: FAILED, KINK: KINK_AFFECTED, INCONCLUSIVE: INCONCLUSIVE}
"""A direction's verdict -> the row status it stands for."""


@dataclass(frozen=True)
class Judged:
    """One direction: autograd's ``grad . u``, the oracle's estimate and the judge's verdict."""

    autograd: float
    estimate: DirectionalEstimate
    verdict: Verdict

    @property
    def status(self) -> str:
        """The row status this direction stands for."""
        return _ROW_STATUS[self.verdict.status]


def direction(base: torch.Tensor, seed: int, index: int, attempt: int) -> torch.Tensor:
    """A seeded Gaussian direction scaled like the tensor (unit rms when the tensor is 0)."""
    seeded = ((seed * 1_000_003 + index) * 1009 + attempt) % 2**64
    generator = torch.Generator().manual_seed(seeded)
    u = torch.randn(base.shape, generator=generator, dtype=torch.float64).to(base.device)
    norm = float(base.norm())
    target = norm if norm > 0 else math.sqrt(base.numel())
    return u * (target / float(u.norm()))


def stable_index(name: str) -> int:
    """A per-tensor number for seeding its directions, the same in every Python process."""
    return sum((i + 1) * ord(c) for i, c in enumerate(name)) % 1_000_003


def judge_direction(
    autograd: float, rounding: float, estimate: DirectionalEstimate, tolerance: Tolerance
) -> Judged:
    """The verdict of one direction. A switch point at the point itself gives an interval: with
    one switch point autograd's value is one of the one-sided derivatives; with several at once
    (ReLUs of exact zeros) it can be any mix of them, so a value outside the interval is
    undecided, never a failure."""
    if estimate.decided:
        verdict = judge_element(
            autograd, tolerance, oracle=estimate.value, error=estimate.error, noise=rounding
        )
    elif estimate.kink and estimate.lower is not None and estimate.upper is not None:
        verdict = judge_element(
            autograd,
            tolerance,
            noise=rounding,
            lower=estimate.lower,
            upper=estimate.upper,
            outside_interval_fails=False,
        )
    else:
        verdict = judge_element(autograd, tolerance, reason=estimate.reason)
    return Judged(autograd, estimate, verdict)


def check_target(
    target: Target,
    gradient: torch.Tensor,
    workspace: Workspace,
    magnitude: float,
    tolerance: Tolerance,
) -> ModuleRow:
    """The row of one tensor: directions until ``directions`` are decided (or one fails)."""
    settings = workspace.settings
    autograd_eps = float(torch.finfo(settings.dtype).eps)
    index = stable_index(target.name)
    judged: list[Judged] = []
    attempts = 0
    first = initial_steps()
    while attempts < MAX_ATTEMPTS_PER_DIRECTION * settings.directions:
        missing = settings.directions - sum(j.estimate.decided for j in judged)
        if missing <= 0 or any(j.status == FAILED for j in judged):
            break
        # One batch: the first two levels of every missing direction, and the center.
        batch = [direction(target.base, settings.seed, index, attempts + k) for k in range(missing)]
        attempts += missing
        points = [target.base] + [target.base + t * u for u in batch for t in first]
        values = workspace.oracle_losses(target.key, points)
        for k, u in enumerate(batch):
            prefetched = values[1 + k * len(first) : 1 + (k + 1) * len(first)]

            def phi(steps: Sequence[float], u: torch.Tensor = u, ready: list = prefetched) -> list:
                if list(steps) == first:
                    return ready
                return workspace.oracle_losses(target.key, [target.base + t * u for t in steps])

            terms = gradient * u
            estimate = directional_derivative(phi, center=values[0], magnitude=magnitude)
            rounding = AUTOGRAD_ROUNDING_FACTOR * autograd_eps * float(terms.abs().sum())
            judged.append(judge_direction(float(terms.sum()), rounding, estimate, tolerance))
    row = _row(target, judged, attempts, settings.directions)
    if row.passed and not bool(gradient.any()):
        row = dataclasses.replace(row, note=ZERO_GRADIENT_NOTE)
    return row


def rounding_magnitude(workspace: Workspace, target: Target, gradients: Gradients) -> float:
    """The size ``m`` with ``eps * m`` = the rounding noise of one evaluation of ``L``.

    ``|L| + sum |dL/dout * out|`` is the noise when the outputs carry it, but a network whose
    outputs are tiny next to its activations (MobileNetV3 at random init: logits about 1e-10)
    is noisier than that. So the noise is also measured: ``L`` at steps of 1e-12 along one
    direction deviates from the tangent line by rounding alone (the curvature and any gradient
    bug are far below it there). The larger of the two is used
    (:func:`gradcheck.oracles.noise.measured_rounding_magnitude`).
    """
    u = direction(target.base, workspace.settings.seed, stable_index(target.name), 10_000)
    slope = float((gradients.tensors[target.name] * u).sum())
    points = [target.base] + [target.base + t * u for t in NOISE_STEPS]
    values = workspace.oracle_losses(target.key, points)
    return measured_rounding_magnitude(values[0], values[1:], slope, gradients.magnitude)


def _row(target: Target, judged: list[Judged], attempts: int, wanted: int) -> ModuleRow:
    failed = [j for j in judged if j.status == FAILED]
    decided = [j for j in judged if j.estimate.decided]
    if failed:
        status, shown = FAILED, failed[0]
    elif len(decided) >= wanted:
        status, shown = PASSED, max(decided, key=lambda j: j.verdict.excess)
    elif any(j.status == KINK_AFFECTED for j in judged):
        status, shown = KINK_AFFECTED, next(j for j in judged if j.status == KINK_AFFECTED)
    else:
        status, shown = INCONCLUSIVE, judged[-1]
    estimate = shown.estimate
    note = ""
    if status in (KINK_AFFECTED, INCONCLUSIVE):
        note = (
            f"{len(decided)} of {wanted} directions decided in {attempts} attempts; last: "
            f"{estimate.reason}"
        )
    oracle = estimate.value
    relative = abs(shown.autograd - oracle) / abs(oracle) if oracle else abs(shown.autograd)
    return ModuleRow(
        name=target.name,
        kind=target.kind,
        shape=tuple(target.base.shape),
        numel=target.base.numel(),
        status=status,
        autograd=shown.autograd,
        oracle=oracle,
        relative_error=relative if estimate.decided else math.nan,
        error_estimate=estimate.error,
        allowed=shown.verdict.allowed,
        rule=estimate.rule,
        step=estimate.step,
        directions=len(decided),
        attempts=attempts,
        note=note,
    )
