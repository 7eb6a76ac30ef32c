"""The rounding model of the finite-difference core, and the measured evaluation noise.

One evaluation of ``L`` is off by about ``eps * magnitude`` (``magnitude``: the size rounding
scales with, such as ``sum |v * out|``). A one-step quotient divides a difference of evaluations
by ``h``, so its rounding error is ``per_evaluation * eps * magnitude / h``
(:func:`evaluation_rounding`). The one-sided gap ``|F - B|`` of a level is noise below
``factor * rounding + relative_floor * max(|F|, |B|)`` (:func:`level_noise`).

When the outputs do not show how noisy ``L`` is (a network whose outputs are tiny next to its
activations), the noise is measured instead (:func:`measured_rounding_magnitude`): at steps of
about 1e-12 along a direction ``L`` deviates from its tangent line by rounding alone.

FiniteDifference measures it without autograd's slope, output element by output element
(:func:`measured_noise`): at five unevenly spaced points on each side of the input separately (a
kink or jump at the input does not enter), the highest divided difference removes every cubic;
what is left is rounding (cancellation inside fn, float32 inside fn).
:func:`rounding_magnitude` then takes the larger of the assumed and the measured noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from gradcheck.errors import InvalidArgument
from gradcheck.oracles.base import EPS64
from gradcheck.oracles.steps import Number, Quotients
from gradcheck.tolerances import MEASURED_NOISE_SAFETY

NOISE_STEPS: tuple[float, ...] = (1e-12, -1e-12, 2e-12, -2e-12, 3e-12, -3e-12)
"""The steps at which :func:`measured_rounding_magnitude` expects ``L`` to have been evaluated:
small enough that curvature and any gradient bug are far below rounding there."""


NOISE_UNITS_PER_STEP = 256
"""The measurement points are multiples of ``s / 256`` (a multiple of the unit of ``x``, so each
point is exact and all of them lie on one line)."""

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0

NOISE_MULTIPLES: tuple[int, ...] = tuple(
    round(NOISE_UNITS_PER_STEP * (k + (k * _GOLDEN) % 1.0)) for k in range(1, 6)
)
"""FiniteDifference's noise measurement evaluates fn at ``x + m*q*u`` and ``x - m*q*u`` for these
``m`` (``q = s / 256``; 10 evaluations per problem): about ``1.6 s, 2.2 s, 3.9 s, 4.5 s, 5.1 s``,
spaced unevenly, because evenly spaced points alias with the grid fn rounds to: when ``s`` is
close to a whole number of a float32 ``x``'s units, float32 rounding of ``x`` moves linearly
from point to point and a difference rule reads it as smooth."""

NOISE_STEP_FRACTION = 2.0**-9
"""The measurement step ``s`` of an element is this fraction of its first finite-difference step
(about ``2e-6 * clip(|x|, 0.01, 1)``): small enough that quartic terms (``s**4`` times the fourth
derivative) are far below float64 rounding, large enough that a step moves a float32 ``x`` by
about 16 of its units, so float32 inside fn reads as noise."""


def _divided_difference_weights(points: Sequence[float]) -> tuple[float, ...]:
    """Weights ``w`` with ``sum w_k p(t_k) = 0`` for every polynomial of degree below
    ``len(points) - 1`` (the divided difference of the highest order)."""
    return tuple(1.0 / math.prod(t - other for other in points if other != t) for t in points)


NOISE_WEIGHTS = _divided_difference_weights([m / NOISE_UNITS_PER_STEP for m in NOISE_MULTIPLES])
"""Weights of the values at :data:`NOISE_MULTIPLES`: exactly 0 on any cubic."""

NOISE_WEIGHTS_NORM = math.sqrt(sum(w * w for w in NOISE_WEIGHTS))
"""How much the weights amplify independent per-evaluation noise."""

EVALUATIONS_PER_LEVEL = 3
"""A level's rounding counts three evaluations (plus, center, minus), as its assumed magnitude
sums them."""


EPS32 = float(torch.finfo(torch.float32).eps)
"""Machine epsilon of float32: the rounding of outputs that fn computed in float32."""


def exact_in_float32(values: torch.Tensor) -> torch.Tensor:
    """The finite elements float32 holds exactly. An output element of float64 inputs that is
    float32-exact at every perturbed point it takes (points no float32 holds) was computed in
    float32, and rounds like it."""
    # x - float64(float32(x)) is 0 exactly where float32 holds x; NaN for NaN and Inf.
    rounded = values.to(torch.float32).to(values.dtype, copy=True)  # never values itself
    return rounded.sub_(values) == 0.0


def measurement_unit(
    point: torch.Tensor, signs: torch.Tensor, first_steps: torch.Tensor
) -> torch.Tensor:
    """The displacement ``q*u`` per element: :data:`NOISE_STEP_FRACTION` times its first
    finite-difference step over :data:`NOISE_UNITS_PER_STEP`, with the sign of ``signs``,
    rounded to a multiple of the unit of ``x`` away from zero (the coarser one where ``x`` is a
    power of two), so ``x + m*q*u`` is exact on both sides for the whole numbers ``m``, short of
    a further power of two between them. NaN/Inf elements stay put (0)."""
    unit = first_steps * (NOISE_STEP_FRACTION / NOISE_UNITS_PER_STEP)
    magnitude = point.abs()
    return torch.where(torch.isfinite(point), signs * ((magnitude + unit) - magnitude), 0.0)


def measured_noise(center: torch.Tensor, values: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-element noise of one evaluation, from the values at :data:`NOISE_MULTIPLES` on one
    side: ``|sum w_k (value_k - center)| / |w|`` (differences first, so a large output's own
    size does not round into the sum); 0 where a value is NaN/Inf (nothing measured there)."""
    if len(values) != len(NOISE_WEIGHTS):
        raise InvalidArgument(
            f"Got {len(values)} values; pass one per multiple in NOISE_MULTIPLES "
            f"({len(NOISE_WEIGHTS)})."
        )
    side = NoiseSide(center)
    for v in values:
        side.add(v)
    return side.noise()


class NoiseSide:
    """:func:`measured_noise` one value at a time (a check of a large input holds one
    perturbed output, not five): the same sums in the same order, so the same digits."""

    def __init__(self, center: torch.Tensor) -> None:
        self.center = center
        self.total = torch.zeros_like(center)
        self.finite = torch.isfinite(center)
        self.count = 0
        self._terms: torch.Tensor | None = None  # the differences, reused value to value

    def add(self, value: torch.Tensor) -> None:
        """Take the value at the next multiple of :data:`NOISE_MULTIPLES`."""
        self.add_rows(value[None])

    def add_rows(self, values: torch.Tensor) -> None:
        """Take the values at the next ``len(values)`` multiples (one row each)."""
        count = int(values.shape[0])
        weights = torch.tensor(
            NOISE_WEIGHTS[self.count : self.count + count], dtype=values.dtype, device=values.device
        ).reshape(count, *([1] * (values.dim() - 1)))
        if self._terms is None or self._terms.shape != values.shape:
            self._terms = torch.empty_like(values)
        # weights * (values - center), in a buffer of this side's (the same products).
        terms = torch.sub(values, self.center, out=self._terms).mul_(weights)
        for term in terms:  # in order, as one value at a time
            self.total += term
        self.finite &= torch.isfinite(values).all(dim=0)
        self.count += count

    def noise(self) -> torch.Tensor:
        """``|sum w_k (value_k - center)| / |w|``, 0 where a value is NaN/Inf."""
        return torch.where(self.finite, self.total, 0.0).abs() / NOISE_WEIGHTS_NORM


def noise_of_both_sides(center: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """:func:`measured_noise` of the plus and the minus side at once: ``values`` holds the
    values at :data:`NOISE_MULTIPLES` on the plus side, then on the minus side, one row each
    (``(2 * len(NOISE_MULTIPLES), *center.shape)``). Returns ``(2, *center.shape)``, the plus
    side first, with the same sums in the same order as :class:`NoiseSide`, so the same digits.
    """
    per_side = len(NOISE_WEIGHTS)
    sides = values.reshape(2, per_side, *center.shape)
    weights = torch.tensor(NOISE_WEIGHTS, dtype=values.dtype, device=values.device)
    terms = weights.reshape(1, per_side, *([1] * center.dim())) * (sides - center)
    first, *rest = terms.unbind(1)
    total = first + 0.0  # NoiseSide's total starts at 0 (its sign of zero; abs drops it)
    for term in rest:  # in order, as one value at a time
        total += term
    finite = torch.isfinite(center) & torch.isfinite(sides).all(dim=1)
    return torch.where(finite, total, 0.0).abs() / NOISE_WEIGHTS_NORM


_ONE_SIDED = (Quotients._fields.index("forward"), Quotients._fields.index("backward"))
"""Where the one-sided quotients sit in a :class:`~gradcheck.oracles.steps.Quotients`."""


def stair_noise(levels: Sequence[Quotients], size: float, relative: float) -> float:
    """The noise of one evaluation that a staircase of rounding shows, or 0.

    When ``L`` moves in stairs at the steps taken (a one-sided difference is exactly 0 at some
    steps and not at others on the same side; a side that is 0 at every step is flat, as
    ``relu``'s) and the smallest stair ``q`` (the smallest nonzero one-sided difference of such
    a side) is at most ``relative * size`` (``size``: ``|L|``), the stairs are rounding of a
    lower precision inside fn (float32 ``tanh`` near saturation moves by whole float32 units):
    each evaluation is off by up to ``q / 2``. Coarser stairs belong to the function itself
    (``round``, ``floor``) and give 0.
    """
    stairs = []
    for side in _ONE_SIDED:
        moved = [d for level in levels if (d := abs(level[side]) * level.step) > 0.0]
        if moved and len(moved) < len(levels):
            stairs.append(min(moved))
    if not stairs or min(stairs) > relative * size:
        return 0.0
    return min(stairs) / 2.0


def both_sides(
    plus: torch.Tensor, minus: torch.Tensor, ratio: float, rounding_size: torch.Tensor
) -> torch.Tensor:
    """The noise of one evaluation from the two sides' measurements: the larger where they agree
    within ``ratio`` or where it is no larger than ``rounding_size`` (what rounding below float64
    inside fn can reach), else the smaller. Rounding looks alike on both sides, or stays small;
    a switch point or a stair of the function within reach of the measurement (``floor`` 2e-6
    from an edge) spoils one side only, and would otherwise pass for noise as large as the
    stair."""
    low, high = torch.minimum(plus, minus), torch.maximum(plus, minus)
    return torch.where((high <= ratio * low) | (high <= rounding_size), high, low)


def rounding_magnitude(
    assumed: Number, measured: Number, per_evaluation: float, safety: float
) -> Number:
    """The magnitude for :func:`evaluation_rounding`: the larger of ``assumed`` (the size rounding
    scales with) and what the measured noise of one evaluation (``measured``, absolute) gives
    for :data:`EVALUATIONS_PER_LEVEL` evaluations at ``safety`` times its size (floats, or
    tensors element by element, with the same digits)."""
    from_measured = EVALUATIONS_PER_LEVEL * safety * measured / (per_evaluation * EPS64)
    if isinstance(assumed, torch.Tensor) or isinstance(from_measured, torch.Tensor):
        return torch.maximum(torch.as_tensor(assumed), torch.as_tensor(from_measured))
    return max(assumed, from_measured)


def evaluation_rounding(magnitude: Number, step: Number, per_evaluation: float) -> Number:
    """Rounding error of a one-step quotient: ``per_evaluation * eps * magnitude / step``
    (floats or tensors)."""
    return per_evaluation * EPS64 * magnitude / step


def level_noise(level: Quotients, rounding_factor: float, relative_floor: float) -> float:
    """The size below which a level's one-sided gap is noise:
    ``rounding_factor * rounding + relative_floor * max(|F|, |B|)``."""
    return rounding_factor * level.rounding + relative_floor * max(
        abs(level.forward), abs(level.backward)
    )


def measured_rounding_magnitude(
    center: float,
    values: Sequence[float],
    slope: float,
    magnitude: float,
    *,
    steps: Sequence[float] = NOISE_STEPS,
    safety: float = MEASURED_NOISE_SAFETY,
) -> float:
    """The size ``m`` with ``eps * m`` = the rounding noise of one evaluation of ``L``.

    ``center`` is ``L(x)``, ``values[i]`` is ``L(x + steps[i] * u)`` and ``slope`` autograd's
    ``grad L . u``; ``magnitude`` is the size known from the outputs. Returns the larger of
    ``magnitude`` and ``safety * max residual / eps``, the residuals being the distances of the
    values from the tangent line ``center + t * slope``.
    """
    if len(values) != len(steps) or not values:
        raise InvalidArgument(
            f"Got {len(values)} values for {len(steps)} steps; pass one value per step "
            "(L at x + t*u for t in NOISE_STEPS)."
        )
    residuals = [abs(v - center - t * slope) for t, v in zip(steps, values)]
    return max(magnitude, safety * max(residuals) / EPS64)
