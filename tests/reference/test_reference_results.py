"""ReferenceCheckResult: the JSON round trip, raise_for_failure, row lookup and the table."""

from __future__ import annotations

import json
import math

import pytest
import torch
from reference_kernels import NanScale, doubled, randn

from gradcheck import GradientMismatch, ReferenceCheckResult, check_against_reference


def broken(x: torch.Tensor) -> torch.Tensor:
    """``2 * x + 1e-3``, with a NaN in its gradient where ``x`` is 0."""
    return NanScale.apply(x) - x + 1e-3


@pytest.fixture(scope="module")
def failed() -> ReferenceCheckResult:
    """A failed check: an infinite ratio (the output) and a non-finite gradient (x)."""
    x = randn(16, seed=40)
    x[3] = 0
    return check_against_reference(broken, doubled, x)


def test_the_failed_fixture_has_what_json_must_carry(failed):
    assert failed.row("output").ratio == math.inf
    assert failed.row("x").status == "failed" and "non-finite" in failed.row("x").note


def test_json_round_trip(failed):
    assert ReferenceCheckResult.from_dict(failed.to_dict()) == failed
    text = failed.to_json()
    assert "Infinity" not in text and "NaN" not in text  # strict JSON
    assert ReferenceCheckResult.from_dict(json.loads(text)) == failed


def test_raise_for_failure(failed):
    with pytest.raises(GradientMismatch) as raised:
        failed.raise_for_failure()
    assert str(raised.value).startswith("Gradient mismatch against the float64 reference")
    passed = check_against_reference(doubled, doubled, randn(8, seed=41))
    assert passed.passed and passed.raise_for_failure() is passed


def test_rows_by_name_and_the_table(failed):
    with pytest.raises(KeyError, match="rows: x, output"):
        failed.row("weight")
    lines = failed.table().splitlines()
    assert len(lines) == 2 + len(failed.rows)
    assert lines[2].startswith("failed") and "inf" in lines[3]
