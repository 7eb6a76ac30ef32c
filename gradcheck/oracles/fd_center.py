"""What every probe of one finite-difference problem shares: the outputs at the input with their
cotangents and rounding weights (:class:`Center`), and the evaluation noise measured once per
problem (:func:`measure`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from gradcheck.oracles.base import EPS64, Problem
from gradcheck.oracles.batch_eval import PointEvaluator
from gradcheck.oracles.noise import (
    EPS32,
    NOISE_MULTIPLES,
    both_sides,
    evaluation_rounding,
    exact_in_float32,
    measured_noise,
    measurement_unit,
    rounding_magnitude,
)
from gradcheck.tolerances import (
    FD_MEASURED_NOISE_SAFETY,
    FD_NOISE_SIDES_RATIO,
    FD_ROUNDING_PER_EVALUATION,
    FD_STAIR_ROUNDING_RELATIVE,
)


@dataclass
class Center:
    """What every probe of one problem shares: the float64 outputs at the input, their
    cotangents, where the cotangent is not 0 (only there does an output contribute), each
    output's rounding weight (its dtype's eps in units of float64's), the elements that are
    float32-exact at the input and at every measurement point (``narrow``: computed in float32
    where they move), those that moved between the measurement points (``varied``) and their
    measured noise of one evaluation (absolute; zeros until measured)."""

    outputs: list[torch.Tensor]
    cotangents: list[torch.Tensor]
    live: list[torch.Tensor]
    weights: list[float]
    narrow: list[torch.Tensor]
    varied: list[torch.Tensor] = field(default_factory=list)
    noise: list[torch.Tensor] = field(default_factory=list)
    whole: list[bool] = field(default_factory=list)
    noisy: list[torch.Tensor | None] = field(default_factory=list)
    finite_point: bool = True

    def __post_init__(self) -> None:
        # Fast paths, decided once: outputs every element of which contributes, and each
        # output's measured noise contracted with |v| (None when nothing was measured).
        self.whole = [bool(mask.all()) for mask in self.live]
        self.noisy = [None] * len(self.outputs)

    def set_noise(self, noise: list[torch.Tensor]) -> None:
        """Record the measured noise (and its contraction with ``|v|``)."""
        self.noise = noise
        self.noisy = [
            (v.abs() * n) if bool((n > 0).any()) else None for v, n in zip(self.cotangents, noise)
        ]

    def weight(self, j: int, narrow: torch.Tensor) -> torch.Tensor:
        """Output ``j``'s rounding weight per element: its dtype's, or float32's where
        ``narrow``."""
        w = self.weights[j]
        return torch.where(narrow, max(w, EPS32 / EPS64), w)

    def magnitude(
        self, touched: list[torch.Tensor] | None, narrow: list[torch.Tensor] | None
    ) -> float:
        """The rounding magnitude of ``L`` at the input over the ``touched`` output elements
        (every contributing one when None), float32's rounding where ``narrow`` (when None: the
        problem's, where the measurement moved them; a constant 1.0 is float32-exact, but
        says nothing of how fn computes)."""
        assumed = measured = 0.0
        if narrow is None:
            narrow = [n & v for n, v in zip(self.narrow, self.varied)] if self.varied else []
            narrow = narrow or [torch.zeros_like(n) for n in self.narrow]
        for j, (v, out) in enumerate(zip(self.cotangents, self.outputs)):
            mask = self.live[j] if touched is None else self.live[j] & touched[j]
            assumed += float((self.weight(j, narrow[j]) * (v * out).abs())[mask].sum())
            measured += self.measured(j, mask)
        return rounding_magnitude(
            assumed, measured, FD_ROUNDING_PER_EVALUATION, FD_MEASURED_NOISE_SAFETY
        )

    def size(self, touched: list[torch.Tensor]) -> float:
        """``sum |v * out|`` at the input over the ``touched`` output elements."""
        return sum(
            float((v * out).abs()[live & moved].sum())
            for v, out, live, moved in zip(self.cotangents, self.outputs, self.live, touched)
        )

    def measured(self, j: int, mask: torch.Tensor) -> float:
        """The measured noise of output ``j``'s elements in ``mask``, contracted with ``|v|``."""
        noisy = self.noisy[j] if self.noisy else None
        return 0.0 if noisy is None else float((noisy * mask).sum())

    def resolution(
        self,
        step: float,
        touched: list[torch.Tensor] | None,
        narrow: list[torch.Tensor] | None,
    ) -> float:
        """The smallest derivative a step of ``step`` resolves: the rounding of one level."""
        magnitude = self.magnitude(touched, narrow)
        return evaluation_rounding(magnitude, step, FD_ROUNDING_PER_EVALUATION)


def center_of(problem: Problem) -> Center | None:
    """The outputs at the input with their cotangents and rounding weights; None when an output
    element that contributes (cotangent not 0) is NaN/Inf there."""
    raw = [
        out
        for out, v in zip(problem.outputs_at(problem.point), problem.cotangents)
        if v is not None
    ]
    cotangents = problem.used_cotangents
    outputs = [out.to(torch.float64) for out in raw]
    live = [v != 0 for v in cotangents]
    if not all(bool(torch.isfinite(out)[m].all()) for out, m in zip(outputs, live)):
        return None
    weights = [_rounding_weight(out.dtype) for out in raw]
    narrow = [exact_in_float32(out) for out in outputs]
    center = Center(outputs, cotangents, live, weights, narrow)
    center.finite_point = bool(torch.isfinite(problem.point).all())
    return center


def _rounding_weight(dtype: torch.dtype) -> float:
    """The eps of ``dtype`` in units of float64's (1 for float64 and anything not floating)."""
    if not dtype.is_floating_point:
        return 1.0
    return max(1.0, float(torch.finfo(dtype).eps) / EPS64)


def measure(
    problem: Problem, center: Center, first_steps: torch.Tensor, evaluator: PointEvaluator
) -> None:
    """Each output element's noise of one evaluation, measured once per problem (into
    ``center.noise``), and where it is float32-exact (``center.narrow``): fn at
    ``x +/- m*q*u`` (``u`` seeded random signs, ``q*u`` per element from
    :func:`~gradcheck.oracles.noise.measurement_unit`, ``m`` in
    :data:`~gradcheck.oracles.noise.NOISE_MULTIPLES`), all ten points in one batch, each side
    combined on its own by :func:`~gradcheck.oracles.noise.both_sides`. Nothing is measured
    where fn raises, and 0 where it is NaN/Inf."""
    generator = torch.Generator().manual_seed(problem.seed)
    signs = torch.randint(0, 2, (problem.size,), generator=generator, dtype=torch.float64)
    unit = measurement_unit(problem.point, (2.0 * signs - 1.0).to(problem.device), first_steps)
    multiples = [side * m for side in (1.0, -1.0) for m in NOISE_MULTIPLES]
    rows = evaluator.at(torch.stack([problem.point + t * unit for t in multiples]))
    if any(error is not None for error in rows.errors):
        return
    count = len(NOISE_MULTIPLES)
    sides = [
        [
            measured_noise(out, list(rows.outputs[j][k * count : (k + 1) * count]))
            for j, out in enumerate(center.outputs)
        ]
        for k in range(2)
    ]
    narrow = [mask.clone() for mask in center.narrow]
    varied = [torch.zeros_like(mask) for mask in center.narrow]
    for j, out in enumerate(center.outputs):
        values = rows.outputs[j]
        narrow[j] &= exact_in_float32(values).all(dim=0)
        varied[j] |= (values != out).any(dim=0)
    center.set_noise(
        [
            torch.where(live, both_sides(plus, minus, FD_NOISE_SIDES_RATIO, rounding_size), 0.0)
            for live, plus, minus, rounding_size in zip(
                center.live,
                *sides,
                [FD_STAIR_ROUNDING_RELATIVE * out.abs() for out in center.outputs],
            )
        ]
    )
    center.narrow, center.varied = narrow, varied
