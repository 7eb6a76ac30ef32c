"""Property 4 (generalises tracking/*): no_grad, inference_mode, detach and
requires_grad_(False) record no graph, give identical values, block gradients, and detach
shares storage with its source."""

from __future__ import annotations

from hypothesis import given

from gradcheck.semantics import check_tracking_off
from gradcheck.strategies import expressions, shapes, tensors


@given(expression=expressions(max_symbols=1), x=tensors(shape=shapes(max_dims=2, max_side=3)))
def test_tracking_off_records_nothing_and_changes_no_value(expression, x) -> None:
    result = check_tracking_off(expression, x)
    assert result.passed, result.message
