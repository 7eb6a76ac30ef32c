"""Property 7 (generalises neuron/relu_backward, calculus/relu_kink): away from kinks,
ReLU-containing expressions match the Heaviside-aware SymPy derivative; exactly at a kink, the
value torch returns is a valid subgradient."""

from __future__ import annotations

import sympy as sp
import torch
from hypothesis import given
from hypothesis import strategies as st

from gradcheck import Symbolic, check_function
from gradcheck.strategies import expressions, tensors

KINKS = (-1.0, 0.0, 0.5)


def relu_shifted(x: torch.Tensor, outer: object, kink: float) -> torch.Tensor:
    return outer(torch.relu(x - kink))  # type: ignore[operator]


def composed(outer, kink: float) -> sp.Expr:
    """``outer(Max(0, x - kink))`` as a SymPy expression (Heaviside-aware when differentiated)."""
    x = sp.Symbol("x", real=True)
    return outer.expr.subs(x, sp.Max(0, x - sp.Rational(kink)))


@given(
    outer=expressions(max_symbols=1, max_depth=2, reductions=(None,)),
    kink=st.sampled_from(KINKS),
    x=tensors(shape=(4,), away_from=KINKS, margin=1e-3),
)
def test_away_from_kinks_relu_matches_the_heaviside_derivative(outer, kink, x) -> None:
    expr = composed(outer, kink)
    for oracle in (Symbolic(expr, symbols=("x",)), "finite_difference"):
        result = check_function(lambda x: relu_shifted(x, outer, kink), x, oracle=oracle)
        assert result.passed, result.message
        assert not result.kinks, f"{expr}: no element of x is on a kink, yet {result.kinks}"


@given(
    outer=expressions(max_symbols=1, max_depth=2, reductions=(None,)),
    kink=st.sampled_from(KINKS),
    x=tensors(shape=(3,), away_from=KINKS, margin=1e-3),
)
def test_at_a_kink_torch_returns_a_valid_subgradient(outer, kink, x) -> None:
    x = torch.cat([x, torch.tensor([kink], dtype=torch.float64)])  # one element exactly on it
    for oracle in (Symbolic(composed(outer, kink), symbols=("x",)), "finite_difference"):
        result = check_function(lambda x: relu_shifted(x, outer, kink), x, oracle=oracle)
        assert result.passed, result.message
