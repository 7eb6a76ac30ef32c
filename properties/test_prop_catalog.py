"""Property 6 (generalises neuron/relu_backward, chain/*, linear/mse_gradients,
polynomial/cubic_minus_square): the catalog's computations hold for random parameters, not
only the notebooks' numbers."""

from __future__ import annotations

import torch
from hypothesis import given

from gradcheck import assert_gradients_correct
from gradcheck.scenarios import chain, linear, neuron
from gradcheck.strategies import scalars, tensors


@given(w=scalars(away_from=(0.0,)), b=scalars())
def test_relu_neuron(w, b) -> None:
    for oracle in ("sympy", "finite_difference"):
        expr = neuron.EXPR if oracle == "sympy" else None
        assert_gradients_correct(neuron.neuron, (w, b), oracle=oracle, expr=expr)


@given(a=scalars(min_value=-1e3, max_value=1e3), v=scalars(min_value=-200, max_value=200))
def test_scalar_chain_and_squared_loss(a, v) -> None:
    for fn, expr, cotangent in (
        (chain.plus_two, "a + 2", v),
        (chain.times_three, "(a + 2)*3", v),
        (chain.squared_loss, chain.LOSS, None),
    ):
        assert_gradients_correct(fn, a, oracle="sympy", expr=expr, cotangents=cotangent)
        assert_gradients_correct(fn, a, cotangents=cotangent)


@given(w=scalars(), b=scalars(), x=tensors(shape=(3,)))
def test_linear_mse(w, b, x) -> None:
    third = torch.full((3,), 1 / 3, dtype=torch.float64)
    assert_gradients_correct(
        linear.squared_residual, (w.requires_grad_(), b.requires_grad_(), x),
        oracle="sympy", expr=linear.RESIDUAL, cotangents=third,
    )  # fmt: skip
    assert_gradients_correct(
        lambda w, b: linear.mse(4 * x + 1, w * x + b), (w.detach(), b.detach())
    )


@given(a=tensors(shape=(2,)), b=tensors(shape=(2,)), v=tensors(shape=(2,)))
def test_cubic_minus_square(a, b, v) -> None:
    fn = linear.cubic_minus_square
    assert_gradients_correct(fn, (a, b), oracle="sympy", expr="3*a**3 - b**2", cotangents=v)
    assert_gradients_correct(fn, (a, b), cotangents=v)
