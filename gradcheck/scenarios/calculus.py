"""Functions with closed-form derivatives: the table every oracle is tested against first.

Each entry is elementwise, with its torch form, its closed-form derivative (torch, float64), its
SymPy text, and the points where it is hard: ill-conditioned but smooth (``exp`` at 30, ``log``
near 1e-3, saturated ``tanh``, ``x**10``, large-argument ``sin``) and kinks (``relu``, ``abs``,
``max`` at exactly 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Elementwise = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class KnownDerivative:
    """An elementwise function with its exact derivative and the points to probe it at.

    ``kinks`` lists the points (among ``points``) where the function is not differentiable, with
    the interval of valid subgradients there.
    """

    id: str
    fn: Elementwise
    derivative: Elementwise
    expr: str
    points: tuple[float, ...]
    kinks: dict[float, tuple[float, float]] | None = None
    tags: tuple[str, ...] = ()


def _sigmoid_derivative(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s)


KNOWN_DERIVATIVES: tuple[KnownDerivative, ...] = (
    KnownDerivative("sin", torch.sin, torch.cos, "sin(x)", (-2.5, -0.3, 0.0, 0.7, 1.9)),
    KnownDerivative(
        "sin_large_argument",
        torch.sin,
        torch.cos,
        "sin(x)",
        (1e4, -3e5, 1e6),
        tags=("ill-conditioned",),
    ),
    KnownDerivative(
        "exp_large",
        torch.exp,
        torch.exp,
        "exp(x)",
        (-30.0, 10.0, 30.0),
        tags=("ill-conditioned",),
    ),
    KnownDerivative(
        "log_near_zero",
        torch.log,
        torch.reciprocal,
        "log(x)",
        (5e-4, 1e-3, 2e-3, 1.0, 50.0),
        tags=("ill-conditioned", "domain-edge"),
    ),
    KnownDerivative(
        "tanh_saturated",
        torch.tanh,
        lambda x: 1 - torch.tanh(x) ** 2,
        "tanh(x)",
        (-18.0, -0.5, 0.5, 15.0, 20.0),
        tags=("ill-conditioned",),
    ),
    KnownDerivative(
        "power_10",
        lambda x: x**10,
        lambda x: 10 * x**9,
        "x**10",
        (-2.0, -0.5, 1.5, 3.0),
        tags=("ill-conditioned",),
    ),
    KnownDerivative(
        "sqrt",
        torch.sqrt,
        lambda x: 0.5 / torch.sqrt(x),
        "sqrt(x)",
        (1e-4, 0.25, 4.0, 1e4),
        tags=("domain-edge",),
    ),
    KnownDerivative(
        "sigmoid", torch.sigmoid, _sigmoid_derivative, "sigmoid(x)", (-40.0, -3.0, 0.0, 2.0, 40.0)
    ),
    KnownDerivative(
        "reciprocal",
        torch.reciprocal,
        lambda x: -1 / x**2,
        "1/x",
        (-0.01, 0.02, 3.0),
        tags=("ill-conditioned",),
    ),
    KnownDerivative(
        "atan", torch.atan, lambda x: 1 / (1 + x**2), "atan(x)", (-1e3, -1.0, 0.0, 7.0)
    ),
    KnownDerivative(
        "erf",
        torch.erf,
        lambda x: 2 / torch.pi**0.5 * torch.exp(-(x**2)),
        "erf(x)",
        (-3.0, 0.0, 0.4, 5.0),
    ),
    KnownDerivative(
        "gaussian_bump",
        lambda x: x * torch.exp(-(x**2)),
        lambda x: (1 - 2 * x**2) * torch.exp(-(x**2)),
        "x*exp(-x**2)",
        (-2.0, -0.7071, 0.0, 1.3),
    ),
    KnownDerivative(
        "relu_kink",
        torch.relu,
        lambda x: (x > 0).to(x.dtype),
        "Max(0, x)",
        (-1.5, 0.0, 0.0, 2.0, 1e-9),
        kinks={0.0: (0.0, 1.0)},
        tags=("kink",),
    ),
    KnownDerivative(
        "abs_kink",
        torch.abs,
        torch.sign,
        "Abs(x)",
        (-2.0, 0.0, 3.0),
        kinks={0.0: (-1.0, 1.0)},
        tags=("kink",),
    ),
    KnownDerivative(
        "max_of_x_and_2x",
        lambda x: torch.maximum(x, 2 * x),
        lambda x: torch.where(x > 0, 2.0, 1.0).to(x.dtype),
        "Max(x, 2*x)",
        (-1.0, 0.0, 0.5),
        kinks={0.0: (1.0, 2.0)},
        tags=("kink",),
    ),
)
"""The table of functions with closed-form derivatives."""


def known_derivative(entry_id: str) -> KnownDerivative:
    """The table entry named ``entry_id``."""
    for entry in KNOWN_DERIVATIVES:
        if entry.id == entry_id:
            return entry
    raise KeyError(entry_id)
