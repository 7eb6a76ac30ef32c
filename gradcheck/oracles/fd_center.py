"""What every probe of one finite-difference problem shares: the outputs at the input with their
cotangents and rounding weights (:class:`Center`), and the evaluation noise measured once per
problem (:func:`measure`)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from gradcheck.oracles.base import EPS64, Problem
from gradcheck.oracles.batch_eval import Rows
from gradcheck.oracles.noise import (
    EPS32,
    NOISE_MULTIPLES,
    NoiseSide,
    both_sides,
    exact_in_float32,
    measurement_unit,
    noise_of_both_sides,
    rounding_magnitude,
)
from gradcheck.oracles.scratch import Scratch
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
    measured noise of one evaluation times ``|v|`` (``noisy``: None for an output with none
    measured; the noise itself is not kept, a full-size tensor per output no probe reads)."""

    outputs: list[torch.Tensor]
    cotangents: list[torch.Tensor]
    live: list[torch.Tensor]
    weights: list[float]
    narrow: list[torch.Tensor]
    varied: list[torch.Tensor] = field(default_factory=list)
    whole: list[bool] = field(default_factory=list)
    noisy: list[torch.Tensor | None] = field(default_factory=list)
    finite_point: bool = True
    overall: float | None = None

    def __post_init__(self) -> None:
        # Fast paths, decided once: outputs every element of which contributes, and each
        # output's measured noise contracted with |v| (None when nothing was measured).
        self.whole = [bool(mask.all()) for mask in self.live]
        self.noisy = [None] * len(self.outputs)

    def set_noise(self, noise: list[torch.Tensor]) -> None:
        """Record the measured noise as its contraction with ``|v|``."""
        self.noisy = [
            (v.abs() * n) if bool((n > 0).any()) else None for v, n in zip(self.cotangents, noise)
        ]

    def weight(self, j: int, narrow: torch.Tensor) -> torch.Tensor:
        """Output ``j``'s rounding weight per element: its dtype's, or float32's where
        ``narrow``."""
        w = self.weights[j]
        return torch.where(narrow, max(w, EPS32 / EPS64), w)

    def overall_magnitude(self) -> float:
        """The rounding magnitude of ``L`` at the input over every contributing output element,
        float32's rounding where the measurement moved float32-exact elements (a constant 1.0
        is float32-exact, but says nothing of how fn computes). Computed once."""
        if self.overall is None:
            narrow = [n & v for n, v in zip(self.narrow, self.varied)] if self.varied else []
            narrow = narrow or [torch.zeros_like(n) for n in self.narrow]
            rows: list[torch.Tensor | None] = [n.reshape(1, -1) for n in narrow]
            touched = [live.reshape(1, -1) for live in self.live]
            self.overall = self.magnitudes(touched, rows)[0]
        return self.overall

    def magnitudes(
        self,
        touched: list[torch.Tensor],
        narrow: list[torch.Tensor | None],
        scratch: Scratch | None = None,
    ) -> list[float]:
        """The rounding magnitude of ``L`` at the input over each sequence's ``touched`` output
        elements (``(sequences, elements)`` per output), float32's rounding where ``narrow``
        (None: nowhere); full-size intermediates in ``scratch``'s work buffers when given."""
        count = int(touched[0].shape[0]) if touched else 0
        assumed, measured = [0.0] * count, [0.0] * count
        for j in range(len(self.outputs)):
            mask = self.live[j].reshape(1, -1) & touched[j]
            rows = narrow[j]
            products = self._abs_products(j, scratch)
            # weight * |v * out|: the float weight in place, the per-element one (float32
            # weights, promoted) into a fresh tensor.
            if rows is None:
                sizes = products.mul_(self.weights[j])
            else:
                sizes = self.weight(j, rows) * products
            _add(assumed, _masked_sums(mask, sizes, scratch))
            noisy = self.noisy[j] if self.noisy else None
            if noisy is not None:
                _add(measured, _masked_products(mask, noisy.reshape(1, -1), scratch))
        return [
            rounding_magnitude(a, m, FD_ROUNDING_PER_EVALUATION, FD_MEASURED_NOISE_SAFETY)
            for a, m in zip(assumed, measured)
        ]

    def sizes(self, touched: list[torch.Tensor], scratch: Scratch | None = None) -> list[float]:
        """``sum |v * out|`` at the input over each sequence's ``touched`` output elements."""
        count = int(touched[0].shape[0]) if touched else 0
        totals = [0.0] * count
        for j, (live, moved) in enumerate(zip(self.live, touched)):
            mask = live.reshape(1, -1) & moved
            _add(totals, _masked_sums(mask, self._abs_products(j, scratch), scratch))
        return totals

    def _abs_products(self, j: int, scratch: Scratch | None) -> torch.Tensor:
        """``|v * out|`` of output ``j`` as ``(1, elements)``, in ``scratch``'s work buffer when
        given (overwritten by the next call)."""
        v, out = self.cotangents[j], self.outputs[j]
        into = None if scratch is None else scratch.take("work", tuple(out.shape))
        return torch.mul(v, out, out=into).abs_().reshape(1, -1)


def _masked_sums(mask: torch.Tensor, values: torch.Tensor, scratch: Scratch | None) -> torch.Tensor:
    """Per row of ``mask`` (``(sequences, elements)``), the sum of ``values`` (``(1, elements)``
    or ``mask``'s shape) where it is True: as ``torch.where(mask, values, 0.0).sum(dim=1)``,
    into ``scratch``'s other buffer when given."""
    if scratch is None:
        return torch.where(mask, values, 0.0).sum(dim=1)
    into = scratch.take("other", tuple(mask.shape))
    return torch.where(mask, values, values.new_zeros(()), out=into).sum(dim=1)


def _masked_products(
    mask: torch.Tensor, values: torch.Tensor, scratch: Scratch | None
) -> torch.Tensor:
    """Per row of ``mask``, the sum of ``values * mask`` (NaN stays NaN where masked out), as
    mask's 0s and 1s times ``values``: the same products, into ``scratch``'s other buffer when
    given."""
    if scratch is None:
        return (values * mask).sum(dim=1)
    return scratch.take("other", tuple(mask.shape)).copy_(mask).mul_(values).sum(dim=1)


def _add(totals: list[float], values: torch.Tensor) -> None:
    for k, value in enumerate(values.tolist()):
        totals[k] += value


def center_of(problem: Problem) -> Center | None:
    """The outputs at the input with their cotangents and rounding weights; None when an output
    element that contributes (cotangent not 0) is NaN/Inf there."""
    raw = [out for out, v in zip(problem.outputs_at_point(), problem.cotangents) if v is not None]
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


@dataclass(frozen=True)
class NoisePoints:
    """The ten points of :func:`measure`: ``x +/- m*q*u`` (``u`` seeded random signs, ``q*u``
    per element from :func:`~gradcheck.oracles.noise.measurement_unit`, ``m`` in
    :data:`~gradcheck.oracles.noise.NOISE_MULTIPLES`), the plus side first."""

    point: torch.Tensor
    unit: torch.Tensor
    multiples: tuple[float, ...]

    @classmethod
    def of(cls, problem: Problem, first_steps: torch.Tensor) -> NoisePoints:
        """The points of ``problem`` (its seed draws the signs)."""
        generator = torch.Generator().manual_seed(problem.seed)
        signs = torch.randint(0, 2, (problem.size,), generator=generator, dtype=torch.float64)
        signs = (2.0 * signs - 1.0).to(problem.device)
        unit = measurement_unit(problem.point, signs, first_steps)
        multiples = tuple(side * m for side in (1.0, -1.0) for m in NOISE_MULTIPLES)
        return cls(problem.point, unit, multiples)

    def row(self, i: int, scratch: Scratch | None = None) -> torch.Tensor:
        """Point ``i`` (in ``scratch``'s noise point buffer when given, overwritten by the next
        row)."""
        if scratch is None:
            return self.point + self.multiples[i] * self.unit
        into = scratch.take("noise point", tuple(self.unit.shape))
        return torch.add(self.point, torch.mul(self.unit, self.multiples[i], out=into), out=into)

    def stacked(self) -> torch.Tensor:
        """All ten points, ``(10, size)``: each row as :meth:`row` forms it."""
        multiples = torch.tensor(self.multiples, dtype=self.unit.dtype, device=self.unit.device)
        return self.point + multiples[:, None] * self.unit


def measure(problem: Problem, center: Center, chunks: Iterable[Rows]) -> None:
    """Each output element's noise of one evaluation, measured once per problem (into
    ``center.noisy``, times ``|v|``), and where it is float32-exact (``center.narrow``), from
    fn at the :class:`NoisePoints` (``chunks``: their rows in order, in one batch or a few at
    a time), each side on its own, combined by :func:`~gradcheck.oracles.noise.both_sides`.
    Nothing is measured where fn raises, and 0 where it is NaN/Inf."""
    chunks = iter(chunks)
    first = next(chunks, None)
    if first is None:
        return
    if len(first.errors) == 2 * len(NOISE_MULTIPLES):
        measured = _measured_at_once(center, first)
    else:
        measured = _measured_in_parts(center, itertools.chain([first], chunks))
    if measured is None:
        return
    plus, minus, narrow, varied = measured
    center.set_noise(
        [
            torch.where(live, both_sides(up, down, FD_NOISE_SIDES_RATIO, rounding_size), 0.0)
            for live, up, down, rounding_size in zip(
                center.live,
                plus,
                minus,
                [FD_STAIR_ROUNDING_RELATIVE * out.abs() for out in center.outputs],
            )
        ]
    )
    center.narrow, center.varied = narrow, varied


_Measured = tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]
"""Each output's noise on the plus side and on the minus side, where it is float32-exact at
the center and every point, and where it moved between the points."""


def _measured_at_once(center: Center, rows: Rows) -> _Measured | None:
    """:func:`measure`'s sides from one batch holding every point (None where fn raised)."""
    if any(error is not None for error in rows.errors):
        return None
    at_point = rows.center or center.outputs  # fn at the point, evaluated as the rows were
    plus, minus, narrow, varied = [], [], [], []
    for j, out in enumerate(at_point):
        values = rows.outputs[j]
        sides = noise_of_both_sides(out, values)
        plus.append(sides[0])
        minus.append(sides[1])
        narrow.append(center.narrow[j] & exact_in_float32(values).all(dim=0))
        varied.append((values != out).any(dim=0))
    return plus, minus, narrow, varied


def _measured_in_parts(center: Center, chunks: Iterable[Rows]) -> _Measured | None:
    """:func:`measure`'s sides from the points a few at a time (one perturbed output held at
    once for a large input), with the same sums in the same order as :func:`_measured_at_once`.
    """
    per_side = len(NOISE_MULTIPLES)
    sides: list[list[NoiseSide]] = []
    narrow = [mask.clone() for mask in center.narrow]
    varied = [torch.zeros_like(mask) for mask in center.narrow]
    seen = 0
    for rows in chunks:
        if any(error is not None for error in rows.errors):
            return None
        at_point = rows.center or center.outputs
        start, count = 0, len(rows.errors)
        while start < count:
            if seen % per_side == 0:
                sides.append([NoiseSide(out) for out in at_point])
            stop = min(count, start + per_side - seen % per_side)  # up to the side's end
            for j, out in enumerate(at_point):
                values = rows.outputs[j][start:stop]
                sides[-1][j].add_rows(values)
                narrow[j] &= exact_in_float32(values).all(dim=0)
                varied[j] |= (values != out).any(dim=0)
            seen += stop - start
            start = stop
    plus, minus = ([side.noise() for side in chunk] for chunk in sides)
    return plus, minus, narrow, varied
