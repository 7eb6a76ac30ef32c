"""The reference gate on hand-made tensors: the two error measures, the floor, and the order of
the rules (non-finite, ill-conditioned, then the multiplier)."""

from __future__ import annotations

import math

import pytest
import torch

from gradcheck.reference import gate
from gradcheck.tolerances import reference_floor

F64 = torch.float64
BF16 = torch.bfloat16


def errors(normwise: float, elementwise: float | None = None, nonfinite: int = 0) -> gate.Errors:
    return gate.Errors(normwise, normwise if elementwise is None else elementwise, nonfinite, None)


def test_normwise_and_elementwise_errors():
    golden = torch.tensor([3.0, 4.0, 0.0, 0.0], dtype=F64)
    value = torch.tensor([3.0, 4.0, 0.0, 0.5])  # ||diff|| / ||golden|| = 0.5 / 5
    measured = gate.errors(value, golden)
    assert measured.normwise == pytest.approx(0.1)
    # The 0 element is measured against the mean size 7/4, not against 0.
    assert measured.elementwise == pytest.approx(0.5 / 1.75)
    assert measured.nonfinite == 0 and measured.first_nonfinite is None


def test_one_wrong_element_of_a_large_tensor_shows_elementwise():
    golden = torch.ones(100, 100, dtype=F64)
    value = golden.clone()
    value[7, 3] = 1.5
    measured = gate.errors(value, golden)
    assert measured.normwise == pytest.approx(0.005)
    assert measured.elementwise == pytest.approx(0.5)


def test_non_finite_values_are_counted_where_golden_is_finite_and_left_out_of_the_measures():
    golden = torch.tensor([[1.0, math.inf], [2.0, 2.0]], dtype=F64)
    value = torch.tensor([[1.0, math.inf], [math.nan, 2.0]])
    measured = gate.errors(value, golden)
    assert measured.nonfinite == 1 and measured.first_nonfinite == (1, 0)
    assert measured.normwise == 0 and measured.elementwise == 0
    assert gate.compared_elements(golden) == (3, 1)


def test_an_exact_reference_leaves_the_floor_times_the_multiplier():
    floor = reference_floor(BF16)
    assert floor == torch.finfo(BF16).eps / 2
    exact = errors(0.0)
    assert gate.judge(errors(2.9 * floor), exact, BF16, 3.0, "y").status == "passed"
    verdict = gate.judge(errors(3.1 * floor), exact, BF16, 3.0, "y")
    assert verdict.status == "failed" and "normwise" in verdict.note


def test_each_measure_is_gated_on_its_own():
    baseline = errors(0.01, 0.02)
    assert gate.judge(errors(0.029, 0.059), baseline, BF16, 3.0, "y").status == "passed"
    verdict = gate.judge(errors(0.001, 0.061), baseline, BF16, 3.0, "y")
    assert verdict.status == "failed"
    assert "elementwise 0.061 > 0.06" in verdict.note and "normwise" not in verdict.note


def test_the_rules_before_the_gate():
    fine = errors(0.001)
    verdict = gate.judge(errors(0.001, nonfinite=2), fine, BF16, 3.0, "the gradient of x")
    assert (
        verdict.status == "failed" and "2 non-finite value(s) in the gradient of x" in verdict.note
    )
    both = gate.judge(errors(0.001, nonfinite=2), errors(0.001, nonfinite=1), BF16, 3.0, "y")
    assert both.status == "inconclusive" and "do not fit bfloat16" in both.note
    reference_only = gate.judge(fine, errors(0.001, nonfinite=1), BF16, 3.0, "y")
    assert reference_only.status == "inconclusive"
    ill = gate.judge(errors(5.0), errors(0.32), BF16, 3.0, "y")
    assert ill.status == "inconclusive" and ill.note.startswith("ill-conditioned in bfloat16")
    assert gate.judge(errors(0.2), errors(0.099), BF16, 3.0, "y").status == "passed"
    assert gate.judge(errors(0.9), errors(0.31), BF16, 3.0, "y").status == "passed"


def test_an_element_without_a_correct_digit_leaves_the_normwise_measure_to_decide():
    unjudged = gate.judge(errors(0.01, 5.0), errors(0.01, 0.6), BF16, 3.0, "y")
    assert unjudged.status == "passed" and "elementwise not judged" in unjudged.note
    wrong = gate.judge(errors(0.04, 5.0), errors(0.01, 0.6), BF16, 3.0, "y")
    assert wrong.status == "failed" and "normwise 0.04 > 0.03" in wrong.note
    assert "elementwise not judged" in wrong.note


def test_float64_has_its_own_floor_because_its_reference_is_the_golden_value():
    floor = reference_floor(torch.float64)
    assert floor > 1e4 * torch.finfo(torch.float64).eps
    exact = errors(0.0)
    assert gate.judge(errors(1e-13), exact, torch.float64, 3.0, "y").status == "passed"
    assert gate.judge(errors(1e-6), exact, torch.float64, 3.0, "y").status == "failed"


def test_ratio():
    assert gate.ratio(0.0, 0.0) == 0.0
    assert gate.ratio(1e-3, 0.0) == math.inf
    assert gate.ratio(6.0, 2.0) == 3.0
