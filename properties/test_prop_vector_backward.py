"""Property 2 (generalises vector/backward_vjp): for random non-scalar outputs and random v,
``y.backward(v)`` equals ``v^T J`` from the SymPy and the finite-difference oracles."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gradcheck import Symbolic
from gradcheck.semantics import check_vector_backward
from gradcheck.strategies import expressions, tensors


@given(
    expression=expressions(max_symbols=1, reductions=(None,)),
    data=st.data(),
)
def test_backward_with_v_is_the_vector_jacobian_product(expression, data) -> None:
    size = data.draw(st.integers(2, 5), label="size")
    x = data.draw(tensors(shape=(size,)), label="x")
    v = data.draw(tensors(shape=(size,), min_value=-2, max_value=2), label="v")
    for oracle, expr in (
        (Symbolic(expression.text, symbols=expression.symbols), None),
        ("finite_difference", None),
    ):
        result = check_vector_backward(expression, x, cotangents=v, oracle=oracle, expr=expr)
        assert result.passed, result.message
