"""``check_values``, printed precision, ``oracle_gradient``/``cotangents=``, SymPy helpers and the
round trip of claims and scenario results."""

from __future__ import annotations

import json
import math

import pytest
import torch

import gradcheck
from gradcheck.oracles.symbolic import exact_value, gradient_descent_trajectory
from gradcheck.results import Claim, ScenarioResult
from gradcheck.scenarios import Scenario, run_scenario
from gradcheck.values import check_stated, check_values, printed_half_unit


@pytest.mark.parametrize(
    ("text", "half_unit"),
    (
        ("1.3333", 5e-5),
        ("6.4465e-01", 5e-6),
        ("1.5289e+01", 5e-4),
        ("256.000", 5e-4),
        ("3.", 0.0),
        ("-12.", 0.0),
        ("123", 0.0),
        ("98.25280000000001", 5e-15),
    ),
)
def test_printed_half_unit(text, half_unit) -> None:
    assert printed_half_unit(text) == pytest.approx(half_unit, rel=1e-12)


@pytest.mark.parametrize("text", ("", "abc", "1.2.3", "--1", "nan"))
def test_printed_half_unit_refuses_non_numbers(text) -> None:
    with pytest.raises(gradcheck.InvalidArgument, match="decimal number as printed"):
        printed_half_unit(text)


def test_stated_values_pass_within_their_printed_precision_only() -> None:
    four_thirds = torch.tensor([4 / 3], dtype=torch.float64)
    assert check_stated("w.grad", four_thirds, ["1.3333"]).passed
    wrong = check_stated("w.grad", torch.tensor([1.3334], dtype=torch.float64), ["1.3333"])
    assert not wrong.passed
    assert "measured 1.3334, stated 1.3333 (+/- 5e-05)" in wrong.message
    # an exact integer print allows only the measured dtype's rounding
    assert not check_stated("g", torch.tensor([3.0001]), ["3."]).passed
    assert check_stated("g", torch.tensor([3.0]), ["3."]).passed


def test_check_values_uses_the_measured_dtype_row_and_names_the_worst_element() -> None:
    measured = torch.tensor([[1.0, 2.0], [3.0, 4.0 + 1e-3]])
    result = check_values("p", measured, [1.0, 2.0, 3.0, 4.0], oracle="formula")
    assert not result.passed and result.dtype == "float32" and result.mode == "value"
    assert "worst at p[1, 1]" in result.message and "1 of 4 elements fail" in result.message
    assert check_values("p", measured, [1.0, 2.0, 3.0, 4.001], oracle="formula").passed


def test_check_values_refuses_mismatched_lengths_and_unknown_oracles() -> None:
    with pytest.raises(gradcheck.InvalidArgument, match="2 measured value"):
        check_values("p", [1.0, 2.0], [1.0], oracle="formula")
    with pytest.raises(gradcheck.InvalidArgument, match="tolerances only for the oracles"):
        check_values("p", [1.0], [1.0], oracle="oracle-of-delphi")


def test_nan_expected_is_inconclusive_not_failed() -> None:
    result = check_values("p", [1.0], [math.nan], oracle="formula")
    assert result.status == "inconclusive"


def test_cotangents_select_the_vector_jacobian_product() -> None:
    x = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    v = torch.tensor([0.1, 1.0, 0.001], dtype=torch.float64)
    gradient = gradcheck.oracle_gradient(torch.sin, x, oracle="sympy", expr="sin(x)", cotangents=v)
    assert torch.allclose(gradient["x"], v * torch.cos(x), rtol=1e-15, atol=0)
    result = gradcheck.check_function(torch.sin, x, oracle="sympy", expr="sin(x)", cotangents=v)
    assert result.passed and "cotangents=v" in result.reproduce


def test_cotangents_are_validated() -> None:
    x = torch.ones(3, dtype=torch.float64)
    with pytest.raises(gradcheck.InvalidArgument, match="output 0 has shape"):
        gradcheck.check_function(torch.sin, x, cotangents=torch.ones(2))
    with pytest.raises(gradcheck.InvalidArgument, match="1 output"):
        gradcheck.check_function(torch.sin, x, cotangents=(torch.ones(3), torch.ones(3)))
    with pytest.raises(gradcheck.InvalidArgument, match="finite"):
        gradcheck.check_function(torch.sin, x, cotangents=torch.full((3,), math.nan))
    with pytest.raises(gradcheck.InvalidArgument, match="differentiable inputs are"):
        gradcheck.oracle_gradient(torch.sin, x)["y"]


def test_exact_value_and_descent_trajectory() -> None:
    assert exact_value("((a + 2)*3 - 290)**2", {"a": 100.0}) == 256.0
    assert exact_value("sin(x)", {"x": "0.5"}) == math.sin(0.5)
    weights, losses, closed = gradient_descent_trajectory(
        "((a + 2)*3 - 290)**2", "a", start="100", lr="0.01", steps=3
    )
    assert weights == [99.04, 98.2528, 97.607296] and losses[0] == 256.0
    assert closed == "a_n = 16*41**n/(3*50**n) + 284/3"
    with pytest.raises(gradcheck.InvalidArgument, match="not affine"):
        gradient_descent_trajectory("a**4", "a", start="1", lr="0.1", steps=2)


def test_claims_and_scenario_results_round_trip_through_json() -> None:
    result = run_scenario(gradcheck.scenarios.CATALOG["neuron/relu_backward"])
    data = json.loads(json.dumps(result.to_dict()))
    again = ScenarioResult.from_dict(data)
    assert again == result
    claim = next(c for c in again.claims if c.stated)
    assert claim.stated == ("3.",) and {c.oracle for c in claim.checks} >= {"sympy", "stated"}


def test_a_scenario_that_crashes_or_needs_a_missing_module_never_passes() -> None:
    def crashes(seed: int) -> list[Claim]:
        raise ValueError("boom")

    crashed = run_scenario(Scenario("x/crash", "t", "s", crashes, ("formula",)))
    assert crashed.status == "failed" and "ValueError: boom" in crashed.reason
    skipped = run_scenario(
        Scenario("x/skip", "t", "s", crashes, ("formula",), requires=("no_such_module_xyz",))
    )
    assert skipped.status == "skipped" and not skipped.passed
    assert "no_such_module_xyz" in skipped.reason
    empty = run_scenario(Scenario("x/empty", "t", "s", lambda seed: [], ("formula",)))
    assert empty.status == "failed" and "no claims" in empty.reason


def test_kink_bounds_accept_any_subgradient_and_refuse_others() -> None:
    x = torch.tensor([0.0, 1.0], dtype=torch.float64)
    ones = torch.ones(2, dtype=torch.float64)
    gradient = gradcheck.oracle_gradient(
        torch.relu, x, oracle="sympy", expr="Max(0, x)", cotangents=ones
    )
    lower, upper = gradient.lower[0], gradient.upper[0]
    assert lower.tolist()[0] == 0.0 and upper.tolist()[0] == 1.0 and math.isnan(lower[1])
    for measured, passes in (([0.0, 1.0], True), ([0.5, 1.0], True), ([2.0, 1.0], False)):
        result = check_values(
            "x.grad", measured, gradient["x"], oracle="sympy", lower=lower, upper=upper
        )
        assert result.passed is passes, result.message
    assert len(result.kinks) == 0 and "subgradients [0, 1] (a kink)" in result.message
