"""Property 1 (generalises calculus/*, chain/*, mean/*, polynomial/*): for random expressions
and inputs, autograd equals the SymPy oracle, the finite-difference oracle and forward mode."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle_assertions import assert_matches_oracles

from gradcheck.strategies import expressions, shapes, tensors


@given(expression=expressions(), data=st.data())
def test_autograd_matches_every_oracle(expression, data) -> None:
    shape = data.draw(shapes(max_dims=2, max_side=3), label="shape")
    inputs = [data.draw(tensors(shape=shape), label=name) for name in expression.symbols]
    assert_matches_oracles(expression, inputs)


class SinWrongBackward(torch.autograd.Function):
    """A planted bug in one operation of the grammar: sin whose backward is off by 1e-4."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.cos(x) * (1 + 1e-4)


def test_property_catches_a_planted_wrong_backward() -> None:
    planted = expressions(
        max_symbols=1, unary=("sin", "exp"), torch_ops={"sin": SinWrongBackward.apply}
    )

    failing: list[str] = []  # the expression of each failing call; the last is the shrunk one

    @settings(max_examples=60, derandomize=True, database=None, deadline=None, print_blob=True)
    @given(expression=planted, x=tensors(shape=(3,)))
    def prop(expression, x) -> None:
        try:
            assert_matches_oracles(expression, [x])
        except AssertionError:
            failing.append(expression.text)
            raise

    with pytest.raises(AssertionError) as caught:
        prop()
    assert failing and failing[-1] == "sin(x)"  # Hypothesis replays the shrunk example last
    report = str(caught.value) + "\n".join(getattr(caught.value, "__notes__", []))
    assert "Gradient mismatch" in report and "reproduce: gradcheck.check_function" in report
    print(report)  # the shrunk counterexample, as a reader sees it (pytest -s shows it)
