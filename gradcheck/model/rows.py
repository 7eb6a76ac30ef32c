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

from gradcheck import messages
from gradcheck.judge import Verdict, judge_element
from gradcheck.model.workspace import Gradients, Target, Workspace
from gradcheck.model_results import ModuleRow
from gradcheck.oracles.base import EPS64
from gradcheck.oracles.directional import (
    DirectionalEstimate,
    directional_derivative,
    initial_steps,
)
from gradcheck.oracles.noise import NOISE_STEPS, measured_rounding_magnitude
from gradcheck.status import FAILED, INCONCLUSIVE, KINK, KINK_AFFECTED, PASSED
from gradcheck.tolerances import (
    AUTOGRAD_ROUNDING_FACTOR,
    LOW_PRECISION_FIRST_STEP_EXPONENT,
    LOW_PRECISION_MAX_FIRST_STEP,
    LOW_PRECISION_NOISE_NORM,
    LOW_PRECISION_NOISE_STEPS,
    LOW_PRECISION_STEP_RATIO,
    MEASURED_NOISE_SAFETY,
    WIDE_ESTIMATE_SCALE_SHARE,
    Tolerance,
)

DEFAULT_FIRST_STEP = 1e-6
"""The oracle's first relative step for a module that computes in float64 throughout."""

DEFAULT_STEP_RATIO = 10.0
"""The ratio between the oracle's consecutive steps for a module in float64 throughout."""

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

    @property
    def decided(self) -> bool:
        """True when the oracle's estimate decided this direction (not a kink, not too wide)."""
        return self.estimate.decided and self.verdict.status != INCONCLUSIVE

    @property
    def reason(self) -> str | None:
        """Why the direction is undecided (None when decided)."""
        return self.verdict.reason or self.estimate.reason


def direction(base: torch.Tensor, seed: int, index: int, attempt: int) -> torch.Tensor:
    """A seeded Gaussian direction scaled like the tensor (unit rms when the tensor is 0).

    Drawn in float32 and widened to float64 (exactly): torch's float64 normal sampler on the CPU
    is scalar, about 4x slower than its vectorised float32 one (90 ms against 25 ms for one of
    ResNet18's 2.4M-element weights, which draws 23M numbers in all), and a direction needs
    randomness, not a 53-bit mantissa; the oracle and autograd see the same float64 values."""
    seeded = ((seed * 1_000_003 + index) * 1009 + attempt) % 2**64
    generator = torch.Generator().manual_seed(seeded)
    u = torch.randn(base.shape, generator=generator, dtype=torch.float32)
    u = u.to(base.device, torch.float64)
    norm = float(base.norm())
    target = norm if norm > 0 else math.sqrt(base.numel())
    return u.mul_(target / float(u.norm()))  # in place: the same values, no second tensor


def stable_index(name: str) -> int:
    """A per-tensor number for seeding its directions, the same in every Python process."""
    return sum((i + 1) * ord(c) for i, c in enumerate(name)) % 1_000_003


def judge_direction(
    autograd: float,
    rounding: float,
    estimate: DirectionalEstimate,
    tolerance: Tolerance,
    scale: float = 0.0,
) -> Judged:
    """The verdict of one direction. A switch point at the point itself gives an interval: with
    one switch point autograd's value is one of the one-sided derivatives; with several at once
    (ReLUs of exact zeros) it can be any mix of them, so a value outside the interval is
    undecided, never a failure. An estimate too wide to fix its own sign is undecided
    (``scale``: the loss's scale ``|L| + sum |dL/dout * out|``; see :func:`_too_wide`)."""
    wide = _too_wide(estimate, tolerance, scale)
    if wide is not None:
        verdict = judge_element(autograd, tolerance, reason=wide)
    elif estimate.decided:
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


def _too_wide(estimate: DirectionalEstimate, tolerance: Tolerance, scale: float) -> str | None:
    """Why a decided estimate cannot decide anything: its value or error is not finite, or its
    error is as large as its value, larger than the tolerance and than
    :data:`~gradcheck.tolerances.WIDE_ESTIMATE_SCALE_SHARE` of the loss's scale (a jump at the
    point read as a huge slope, ``1e7 +/- 9e6``); None when it can.

    "As large" counts the error as the judge does, ``error_factor * error``: an interval
    ``value +/- error_factor * error`` that reaches 0 does not even fix the derivative's sign."""
    if not estimate.decided:
        return None
    value, error = estimate.value, estimate.error
    if not (math.isfinite(value) and math.isfinite(error)):
        return f"the oracle's estimate {value!r} +/- {error!r} is not finite"
    if (
        tolerance.error_factor * error >= abs(value)
        and error > tolerance.allowed(value, 0.0)
        and error > WIDE_ESTIMATE_SCALE_SHARE * scale
    ):
        return (
            f"the oracle's error estimate {error:.2g} is too wide for its value {value:.6g} "
            "(it does not even fix the sign): the loss is not smooth along the direction (a "
            "jump at the point, or noise)"
        )
    return None


def first_step(workspace: Workspace) -> float:
    """The oracle's first relative step: :data:`DEFAULT_FIRST_STEP`, or larger when forward
    computes in a lower precision (see
    :data:`~gradcheck.tolerances.LOW_PRECISION_FIRST_STEP_EXPONENT`)."""
    if workspace.lowest_eps <= EPS64:
        return DEFAULT_FIRST_STEP
    step = workspace.lowest_eps**LOW_PRECISION_FIRST_STEP_EXPONENT
    return min(LOW_PRECISION_MAX_FIRST_STEP, max(DEFAULT_FIRST_STEP, step))


def step_ratio(workspace: Workspace) -> float:
    """The ratio between the oracle's consecutive steps: :data:`DEFAULT_STEP_RATIO`, or
    :data:`~gradcheck.tolerances.LOW_PRECISION_STEP_RATIO` with a lower precision inside."""
    return DEFAULT_STEP_RATIO if workspace.lowest_eps <= EPS64 else LOW_PRECISION_STEP_RATIO


def check_target(
    target: Target,
    gradient: torch.Tensor,
    workspace: Workspace,
    magnitude: float,
    tolerance: Tolerance,
) -> ModuleRow:
    """The row of one tensor: directions until ``directions`` are decided (or one fails).

    Each batch also evaluates the unperturbed point, which must agree with the first
    evaluation there (:meth:`Workspace.confirm_center`, raising ``NotAFunction``)."""
    settings = workspace.settings
    index = stable_index(target.name)
    judged: list[Judged] = []
    attempts = 0
    if workspace.lowest_eps > EPS64:
        magnitude = max(magnitude, low_precision_noise(workspace, target))
    while attempts < MAX_ATTEMPTS_PER_DIRECTION * settings.directions:
        missing = settings.directions - sum(j.decided for j in judged)
        if missing <= 0 or any(j.status == FAILED for j in judged):
            break
        batch = [direction(target.base, settings.seed, index, attempts + k) for k in range(missing)]
        attempts += missing
        judged += _judge_batch(target, gradient, workspace, magnitude, tolerance, batch)
    row = _row(target, judged, attempts, settings.directions)
    if row.passed and not bool(gradient.any()):
        row = dataclasses.replace(row, note=ZERO_GRADIENT_NOTE)
    return row


def _judge_batch(
    target: Target,
    gradient: torch.Tensor,
    workspace: Workspace,
    magnitude: float,
    tolerance: Tolerance,
    batch: list[torch.Tensor],
) -> list[Judged]:
    """One batch: the center and the first two levels of every direction, then each
    direction's estimate (further levels evaluated as it asks for them) and verdict."""
    step, ratio = first_step(workspace), step_ratio(workspace)
    first = initial_steps(step, ratio)
    autograd_eps = max(float(torch.finfo(workspace.settings.dtype).eps), workspace.lowest_eps)
    values = workspace.oracle_losses(target.key, workspace.points_for(target, batch, first))
    workspace.confirm_center(values[0], f"the center of a batch for {target.name}")
    judged = []
    for k, u in enumerate(batch):
        prefetched = values[1 + k * len(first) : 1 + (k + 1) * len(first)]

        def phi(steps: Sequence[float], u: torch.Tensor = u, ready: list = prefetched) -> list:
            if list(steps) == first:
                return ready
            points = workspace.points_for(target, [u], steps, center=False)
            return workspace.oracle_losses(target.key, points)

        estimate = directional_derivative(
            phi, center=values[0], magnitude=magnitude, first_step=step, ratio=ratio
        )
        raised = workspace.raised.get(target.key)
        if raised is not None and "NaN/Inf" in str(estimate.reason):
            # A point that made the module raise was evaluated as NaN: say what it raised.
            estimate = dataclasses.replace(
                estimate, reason=messages.module_raised_at_step(str(estimate.reason), raised)
            )
        slope, rounding = autograd_along(gradient, u, autograd_eps)
        judged.append(
            judge_direction(slope, rounding, estimate, tolerance, workspace.rounding_scale)
        )
    return judged


def autograd_along(gradient: torch.Tensor, u: torch.Tensor, eps: float) -> tuple[float, float]:
    """Autograd's ``grad . u`` and its rounding, ``AUTOGRAD_ROUNDING_FACTOR * eps * sum |g u|``.

    The products are formed once and made absolute in place after their sum is taken, so a
    multi-million-element tensor needs one full-size temporary rather than two (the same
    values summed in the same order: the same digits)."""
    terms = gradient * u
    slope = float(terms.sum())
    rounding = AUTOGRAD_ROUNDING_FACTOR * eps * float(terms.abs_().sum())
    return slope, rounding


def rounding_magnitude(workspace: Workspace, target: Target, gradients: Gradients) -> float:
    """The size ``m`` with ``eps * m`` = the rounding noise of one evaluation of ``L``.

    ``|L| + sum |dL/dout * out|`` is the noise when the outputs carry it, but a network whose
    outputs are tiny next to its activations (MobileNetV3 at random init: logits about 1e-10)
    is noisier than that. So the noise is also measured: ``L`` at steps of 1e-12 along one
    direction deviates from the tangent line by rounding alone (the curvature and any gradient
    bug are far below it there), and evaluations at the unperturbed point may differ
    (``workspace.center_gap``). When forward computes in a lower precision (``x.float()``), that
    precision's rounding is the floor, and the noise is measured at steps that move it
    (:func:`low_precision_noise`). The largest of these is used
    (:func:`gradcheck.oracles.noise.measured_rounding_magnitude`).
    """
    u = direction(target.base, workspace.settings.seed, stable_index(target.name), 10_000)
    slope = float((gradients.tensors[target.name] * u).sum())
    values = workspace.oracle_losses(target.key, workspace.points_for(target, [u], NOISE_STEPS))
    workspace.confirm_center(values[0], f"the center of the noise measurement on {target.name}")
    usable = [(t, v) for t, v in zip(NOISE_STEPS, values[1:]) if math.isfinite(v)]
    magnitude = gradients.magnitude
    if usable:
        magnitude = measured_rounding_magnitude(
            values[0],
            [v for _, v in usable],
            slope,
            magnitude,
            steps=[t for t, _ in usable],
        )
    return max(magnitude, MEASURED_NOISE_SAFETY * workspace.center_gap / EPS64)


def low_precision_noise(workspace: Workspace, target: Target) -> float:
    """The noise magnitude along ``target`` of a forward that computes in a precision with
    ``eps`` above float64's, measured: :data:`~gradcheck.tolerances.MEASURED_NOISE_SAFETY` times
    the largest fourth difference at the steps of
    :data:`~gradcheck.tolerances.LOW_PRECISION_NOISE_STEPS` (slope and curvature cancel there,
    so what remains is that precision's rounding as the oracle's steps see it). Measured per
    tensor: a float32 cast of one parameter leaves the input's direction smooth."""
    eps = workspace.lowest_eps
    u = direction(target.base, workspace.settings.seed, stable_index(target.name), 20_000)
    offsets = [k * s * eps for s in LOW_PRECISION_NOISE_STEPS for k in (1.0, -1.0, 2.0, -2.0)]
    points = workspace.points_for(target, [u], offsets, center=False)
    values = workspace.oracle_losses(target.key, points)
    center = workspace.reference_center or 0.0
    measured = 0.0
    for i in range(0, len(values), 4):
        plus, minus, plus2, minus2 = values[i : i + 4]
        fourth = plus2 + minus2 - 4.0 * (plus + minus) + 6.0 * center
        if math.isfinite(fourth):
            measured = max(measured, abs(fourth) / LOW_PRECISION_NOISE_NORM)
    return MEASURED_NOISE_SAFETY * measured / EPS64


def _row(target: Target, judged: list[Judged], attempts: int, wanted: int) -> ModuleRow:
    failed = [j for j in judged if j.status == FAILED]
    decided = [j for j in judged if j.decided]
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
            f"{shown.reason}"
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
        relative_error=relative if shown.decided else math.nan,
        error_estimate=estimate.error,
        allowed=shown.verdict.allowed,
        rule=estimate.rule,
        step=estimate.step,
        directions=len(decided),
        attempts=attempts,
        note=note,
    )
