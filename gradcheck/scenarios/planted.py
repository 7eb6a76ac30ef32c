"""Deliberately wrong gradients: the suite must catch every one of them.

Each is a ``torch.autograd.Function`` whose ``backward`` is wrong in one specific way while its
``forward`` (and its ``jvp``, so forward-mode AD stays an independent, correct path) is right.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from gradcheck.results import Claim
from gradcheck.scenarios.base import SOURCES, Scenario, function_claims


class SinOffByOnePpm(torch.autograd.Function):
    """``sin`` whose backward is off by the factor ``1 + 1e-6`` (below gradcheck's rtol=1e-3)."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        (x,) = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.cos(x) * (1 + 1e-6)

    @staticmethod
    def jvp(ctx: Any, tangent: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return tangent * torch.cos(x)


class ReluTwoAtKink(torch.autograd.Function):
    """``relu`` whose backward returns 2 at exactly 0 (outside the subgradient interval [0, 1])."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        (x,) = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        slope = torch.where(x > 0, 1.0, torch.where(x == 0, 2.0, 0.0)).to(grad.dtype)
        return grad * slope

    @staticmethod
    def jvp(ctx: Any, tangent: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return tangent * (x > 0).to(tangent.dtype)


class SquareWrongAtOneIndex(torch.autograd.Function):
    """``x**2`` whose backward is wrong only at flat index 3 (the check must point there)."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x * x

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        (x,) = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        result = 2 * x * grad
        flat = result.reshape(-1).clone()
        flat[3] = flat[3] * 1.001
        return flat.reshape(result.shape)

    @staticmethod
    def jvp(ctx: Any, tangent: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return 2 * x * tangent


class ExpSquareMissingChainRule(torch.autograd.Function):
    """``exp(x**2)`` whose backward forgets the inner derivative ``2x``."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x * x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        (x,) = inputs
        ctx.save_for_backward(x, output)
        ctx.save_for_forward(x, output)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        _, out = ctx.saved_tensors
        return grad * out

    @staticmethod
    def jvp(ctx: Any, tangent: torch.Tensor) -> torch.Tensor:
        x, out = ctx.saved_tensors
        return tangent * out * 2 * x


def detached_branch(x: torch.Tensor) -> torch.Tensor:
    """``x * sin(x)`` with the ``sin`` branch detached: autograd silently drops ``x*cos(x)``."""
    return x * torch.sin(x).detach()


def _random_points(n: int, seed: int, low: float = -2.0, high: float = 2.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


ALL_ORACLES = ("finite_difference", "sympy", "forward")
KINK_ORACLES = ("finite_difference", "sympy")


def _caught(
    scenario_id: str,
    fn: Callable[..., torch.Tensor],
    make_inputs: Callable[[], torch.Tensor],
    expr: str,
    oracles: tuple[str, ...],
) -> Callable[[int], list[Claim]]:
    def verify(seed: int) -> list[Claim]:
        return function_claims(
            fn,
            make_inputs(),
            oracles=oracles,
            expr=expr,
            expect="fail",
            scenario_id=scenario_id,
            seed=seed,
        )

    return verify


def _planted(
    name: str,
    doc: str,
    fn: Callable[..., torch.Tensor],
    make_inputs: Callable[[], torch.Tensor],
    expr: str,
    oracles: tuple[str, ...] = ALL_ORACLES,
    tags: tuple[str, ...] = (),
) -> Scenario:
    scenario_id = f"planted/{name}"
    return Scenario(
        id=scenario_id,
        topic=f"Planted bug: {doc}",
        source=SOURCES["gradcheck"],
        verify=_caught(scenario_id, fn, make_inputs, expr, oracles),
        oracles=oracles,
        tags=("planted-bug", *tags),
    )


SCENARIOS = (
    _planted(
        "sin_backward_off_by_1e-6",
        "sin backward off by the factor 1 + 1e-6",
        SinOffByOnePpm.apply,
        lambda: _random_points(8, 1),
        "sin(x)",
    ),
    _planted(
        "relu_backward_2_at_kink",
        "relu backward returns 2 at exactly 0",
        ReluTwoAtKink.apply,
        lambda: torch.tensor([-1.0, 0.0, 0.5, 0.0], dtype=torch.float64),
        "Max(0, x)",
        oracles=KINK_ORACLES,
        tags=("kink",),
    ),
    _planted(
        "square_wrong_at_index_3",
        "x**2 backward wrong at flat index 3",
        SquareWrongAtOneIndex.apply,
        lambda: _random_points(6, 2).reshape(2, 3),
        "x**2",
    ),
    _planted(
        "exp_square_missing_chain_rule",
        "exp(x**2) backward without the inner 2x",
        ExpSquareMissingChainRule.apply,
        lambda: _random_points(5, 3),
        "exp(x**2)",
    ),
    _planted(
        "detached_branch",
        "x*sin(x) with the sin branch detached",
        detached_branch,
        lambda: _random_points(5, 4),
        "x*sin(x)",
        oracles=KINK_ORACLES,
    ),
)
