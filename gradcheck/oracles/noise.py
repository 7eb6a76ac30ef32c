"""The rounding model of the finite-difference core, and the measured evaluation noise.

One evaluation of ``L`` is off by about ``eps * magnitude`` (``magnitude``: the size rounding
scales with, such as ``sum |v * out|``). A one-step quotient divides a difference of evaluations
by ``h``, so its rounding error is ``per_evaluation * eps * magnitude / h``
(:func:`evaluation_rounding`). The one-sided gap ``|F - B|`` of a level is noise below
``factor * rounding + relative_floor * max(|F|, |B|)`` (:func:`level_noise`).

When the outputs do not show how noisy ``L`` is (a network whose outputs are tiny next to its
activations), the noise is measured instead (:func:`measured_rounding_magnitude`): at steps of
about 1e-12 along a direction ``L`` deviates from its tangent line by rounding alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from gradcheck.errors import InvalidArgument
from gradcheck.oracles.base import EPS64
from gradcheck.oracles.steps import Quotients
from gradcheck.tolerances import MEASURED_NOISE_SAFETY

NOISE_STEPS: tuple[float, ...] = (1e-12, -1e-12, 2e-12, -2e-12, 3e-12, -3e-12)
"""The steps at which :func:`measured_rounding_magnitude` expects ``L`` to have been evaluated:
small enough that curvature and any gradient bug are far below rounding there."""


def evaluation_rounding(magnitude: float, step: float, per_evaluation: float) -> float:
    """Rounding error of a one-step quotient: ``per_evaluation * eps * magnitude / step``."""
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
