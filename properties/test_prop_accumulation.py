"""Property 3 (generalises accumulation/*, neuron/repeated_backward, neuron/zero_grad):
accumulation is linear, gradients of two losses add, and zero_grad (both modes) resets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gradcheck.semantics import check_accumulation, check_zero_grad
from gradcheck.strategies import expressions, tensors


@given(
    loss=expressions(max_symbols=1, reductions=("sum", "mean")),
    other=expressions(max_symbols=1, reductions=("sum", "mean")),
    x=tensors(shape=(4,)),
    times=st.integers(1, 4),
)
def test_k_backward_calls_give_k_times_the_gradient_and_losses_add(loss, other, x, times) -> None:
    result = check_accumulation(loss, x, times=times, other=other)
    assert result.passed, result.message


@given(loss=expressions(max_symbols=2, reductions=("sum", "mean")), data=st.data())
def test_zero_grad_in_both_modes_then_backward_gives_the_single_gradient(loss, data) -> None:
    inputs = [data.draw(tensors(shape=(3,)), label=name) for name in loss.symbols]
    result = check_zero_grad(loss, inputs)
    assert result.passed, result.message
