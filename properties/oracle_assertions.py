"""Shared assertions of the property suite."""

from __future__ import annotations

import torch

from gradcheck import Symbolic, check_function
from gradcheck.strategies import Expression


def assert_matches_oracles(expression: Expression, inputs: list[torch.Tensor]) -> None:
    """Autograd's gradient of ``expression`` equals SymPy's (tight), the finite differences'
    (within their error estimate) and forward mode's. Where the expression overflows at the
    input there is no derivative to agree on: the elements it reaches must be inconclusive,
    never passed (an infinite oracle value once made the tolerance infinite), and nothing may
    fail."""
    cotangent = expression.reduction_cotangent(*inputs)
    if not bool(torch.isfinite(expression.elementwise(*inputs)).all()):
        result = check_function(expression, inputs, name=repr(expression))
        assert result.status != "failed" and result.inconclusive, result.message
        return
    symbolic = check_function(
        expression.elementwise,
        inputs,
        oracle=Symbolic(expression.text, symbols=expression.symbols),
        cotangents=cotangent,
        name=repr(expression),
    )
    assert symbolic.passed, symbolic.message
    for oracle in ("finite_difference", "forward"):
        result = check_function(expression, inputs, oracle=oracle, name=repr(expression))
        assert result.passed, result.message
