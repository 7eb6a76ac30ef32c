"""Functions with closed-form derivatives: the table every oracle is tested against first.

Each entry is elementwise: its torch form, its closed-form derivative (written with mpmath, so
tests evaluate the truth at 50 digits instead of trusting float64 formulas such as
``1 - tanh(x)**2`` where they cancel), its SymPy text, and the points where it is hard:
ill-conditioned but smooth (``exp`` at 30, ``log`` near 1e-3, saturated ``tanh``, ``x**10``,
large-argument ``sin``) and kinks (``relu``, ``abs``, ``max`` at exactly 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mpmath as mp
import torch

from gradcheck.results import Claim
from gradcheck.scenarios.base import SOURCES, Scenario, function_claims

Elementwise = Callable[[torch.Tensor], torch.Tensor]
Exact = Callable[[mp.mpf], mp.mpf]


@dataclass(frozen=True)
class KnownDerivative:
    """An elementwise function with its exact derivative and the points to probe it at.

    ``kinks`` lists the points (among ``points``) where the function is not differentiable, with
    the interval of valid subgradients there. ``derivative`` takes and returns mpmath numbers.
    """

    id: str
    fn: Elementwise
    derivative: Exact
    expr: str
    points: tuple[float, ...]
    kinks: dict[float, tuple[float, float]] | None = None
    tags: tuple[str, ...] = ()


KNOWN_DERIVATIVES: tuple[KnownDerivative, ...] = (
    KnownDerivative("sin", torch.sin, mp.cos, "sin(x)", (-2.5, -0.3, 0.0, 0.7, 1.9)),
    KnownDerivative(
        "sin_large_argument",
        torch.sin,
        mp.cos,
        "sin(x)",
        (1e4, -3e5, 1e6),
        tags=("ill-conditioned",),
    ),
    KnownDerivative(
        "exp_large",
        torch.exp,
        mp.exp,
        "exp(x)",
        (-30.0, 10.0, 30.0),
        tags=("ill-conditioned",),
    ),
    KnownDerivative(
        "log_near_zero",
        torch.log,
        lambda x: 1 / x,
        "log(x)",
        (5e-4, 1e-3, 2e-3, 1.0, 50.0),
        tags=("ill-conditioned", "domain-edge"),
    ),
    KnownDerivative(
        "tanh_saturated",
        torch.tanh,
        lambda x: mp.sech(x) ** 2,
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
        lambda x: 1 / (2 * mp.sqrt(x)),
        "sqrt(x)",
        (1e-4, 0.25, 4.0, 1e4),
        tags=("domain-edge",),
    ),
    KnownDerivative(
        "sigmoid",
        torch.sigmoid,
        lambda x: mp.exp(-x) / (1 + mp.exp(-x)) ** 2,
        "sigmoid(x)",
        (-40.0, -3.0, 0.0, 2.0, 40.0),
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
        lambda x: 2 / mp.sqrt(mp.pi) * mp.exp(-(x**2)),
        "erf(x)",
        (-3.0, 0.0, 0.4, 5.0),
    ),
    KnownDerivative(
        "gaussian_bump",
        lambda x: x * torch.exp(-(x**2)),
        lambda x: (1 - 2 * x**2) * mp.exp(-(x**2)),
        "x*exp(-x**2)",
        (-2.0, -0.7071, 0.0, 1.3),
    ),
    KnownDerivative(
        "relu_kink",
        torch.relu,
        lambda x: mp.mpf(x > 0),
        "Max(0, x)",
        (-1.5, 0.0, 0.0, 2.0, 1e-9),
        kinks={0.0: (0.0, 1.0)},
        tags=("kink",),
    ),
    KnownDerivative(
        "abs_kink",
        torch.abs,
        mp.sign,
        "Abs(x)",
        (-2.0, 0.0, 3.0),
        kinks={0.0: (-1.0, 1.0)},
        tags=("kink",),
    ),
    KnownDerivative(
        "max_of_x_and_2x",
        lambda x: torch.maximum(x, 2 * x),
        lambda x: mp.mpf(2 if x > 0 else 1),
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


ALL_ORACLES = ("finite_difference", "sympy", "forward")


def _verify_known(entry: KnownDerivative) -> Callable[[int], list[Claim]]:
    def verify(seed: int) -> list[Claim]:
        return function_claims(
            entry.fn,
            torch.tensor(entry.points, dtype=torch.float64),
            oracles=ALL_ORACLES,
            expr=entry.expr,
            expect="kink" if entry.kinks else "pass",
            scenario_id=f"calculus/{entry.id}",
            seed=seed,
        )

    verify.__name__ = f"verify_{entry.id}"
    return verify


SCENARIOS = tuple(
    Scenario(
        id=f"calculus/{entry.id}",
        topic="Known derivatives: the table every oracle is tested against",
        source=SOURCES["gradcheck"],
        verify=_verify_known(entry),
        oracles=ALL_ORACLES,
        tags=entry.tags,
    )
    for entry in KNOWN_DERIVATIVES
)
