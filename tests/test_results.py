"""CheckResult: frozen, JSON round trip, raise_for_failure and assert_gradients_correct."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

import gradcheck
from gradcheck import CheckResult, ElementReport, Note, Tolerance

F64 = torch.float64


class Square(torch.autograd.Function):
    """x**2 with a correct backward (old-style: forward(ctx, x), no jvp, no setup_context)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 2 * x * grad


class SquareTripleBackward(Square):
    """x**2 whose backward is 3 times too large."""

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * (2 * x * grad)


def x3() -> torch.Tensor:
    return torch.tensor([0.3, -1.2, 2.0], dtype=F64)


@pytest.fixture(scope="module")
def passing() -> CheckResult:
    return gradcheck.check_function(torch.sin, x3())


@pytest.fixture(scope="module")
def failing() -> CheckResult:
    return gradcheck.check_function(SquareTripleBackward.apply, x3())


@pytest.fixture(scope="module")
def kinked() -> CheckResult:
    return gradcheck.check_function(torch.relu, torch.tensor([-1.0, 0.0, 2.0], dtype=F64))


@pytest.fixture(scope="module")
def inconclusive() -> CheckResult:
    return gradcheck.check_function(Square.apply, x3(), oracle="forward")


def roundtrip(result: CheckResult) -> CheckResult:
    return CheckResult.from_dict(json.loads(result.to_json()))


def strict_loads(text: str) -> object:
    """json.loads that refuses the non-standard NaN/Infinity tokens."""

    def refuse(token: str) -> object:
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


# -- the fixtures are what they claim to be ----------------------------------------------------


def test_passing_result(passing: CheckResult) -> None:
    assert passing.passed is True
    assert passing.status == "passed"
    assert (passing.checked, passing.failed) == (3, 0)
    assert passing.name == "torch.sin"
    assert passing.oracle == "finite_difference"
    assert passing.dtype == "float64"
    assert passing.mode == "elementwise"
    assert passing.max_abs_error < 1e-9
    assert isinstance(passing.worst, ElementReport)
    assert passing.message.startswith("Gradients match")


def test_failing_result(failing: CheckResult) -> None:
    assert failing.passed is False
    assert failing.status == "failed"
    assert failing.failed == 3
    worst = failing.worst
    assert worst is not None
    assert worst.input == "x"
    assert worst.index is not None and len(worst.index) == 1
    assert worst.point == pytest.approx(x3()[worst.index[0]].item())
    assert worst.autograd == pytest.approx(3 * worst.oracle, rel=1e-8)
    assert worst.abs_error > worst.allowed
    assert failing.message.startswith("Gradient mismatch")
    assert "SquareTripleBackward.apply" in failing.message


def test_kinked_result(kinked: CheckResult) -> None:
    assert kinked.passed
    assert [note.where for note in kinked.kinks] == ["x[1]"]
    assert "on a kink" in kinked.kinks[0].reason
    assert kinked.inconclusive == ()


def test_inconclusive_result(inconclusive: CheckResult) -> None:
    assert inconclusive.status == "inconclusive"
    assert inconclusive.passed is False
    assert inconclusive.checked == 0
    assert inconclusive.worst is None
    assert len(inconclusive.inconclusive) == 3
    assert "forward-mode AD is not available" in inconclusive.inconclusive[0].reason
    assert math.isnan(inconclusive.max_abs_error)


# -- frozen ------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(CheckResult)])
def test_every_field_is_frozen(passing: CheckResult, field: str) -> None:
    before = getattr(passing, field)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(passing, field, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(passing, field)
    assert getattr(passing, field) is before


def test_nested_records_are_frozen_and_immutable(kinked: CheckResult) -> None:
    assert kinked.worst is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        kinked.worst.autograd = 0.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        kinked.tolerance.atol = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        kinked.kinks[0].reason = ""  # type: ignore[misc]
    assert isinstance(kinked.kinks, tuple)
    assert isinstance(kinked.inconclusive, tuple)


def test_a_new_field_cannot_be_added(passing: CheckResult) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        passing.extra = 1  # type: ignore[attr-defined]


# -- JSON --------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["passing", "failing", "kinked", "inconclusive"])
def test_to_json_is_strict_json(which: str, request: pytest.FixtureRequest) -> None:
    result: CheckResult = request.getfixturevalue(which)
    data = strict_loads(result.to_json())
    assert isinstance(data, dict)
    assert data == result.to_dict()
    assert data["status"] == result.status
    assert data["message"] == result.message
    assert data["tolerance"] == {
        "atol": result.tolerance.atol,
        "rtol": result.tolerance.rtol,
        "error_factor": result.tolerance.error_factor,
    }


def test_non_finite_floats_become_strings(inconclusive: CheckResult) -> None:
    data = strict_loads(inconclusive.to_json())
    assert data["max_abs_error"] == "nan"
    assert data["max_rel_error"] == "nan"
    assert data["error_estimate"] == "nan"
    assert data["worst"] is None


def test_to_json_forwards_keyword_arguments(failing: CheckResult) -> None:
    text = failing.to_json(indent=2, sort_keys=True)
    assert "\n  " in text
    keys = list(json.loads(text))
    assert keys == sorted(keys)
    assert json.loads(text) == json.loads(failing.to_json())


@pytest.mark.parametrize("which", ["passing", "failing", "kinked"])
def test_json_round_trip_is_equal(which: str, request: pytest.FixtureRequest) -> None:
    result: CheckResult = request.getfixturevalue(which)
    back = roundtrip(result)
    assert back == result
    assert isinstance(back.tolerance, Tolerance)
    assert isinstance(back.worst, ElementReport)
    assert isinstance(back.worst.index, tuple)
    assert isinstance(back.kinks, tuple)
    assert all(isinstance(note, Note) for note in back.kinks)
    assert back.worst.where == result.worst.where  # type: ignore[union-attr]


def test_round_trip_keeps_the_kink_notes(kinked: CheckResult) -> None:
    back = roundtrip(kinked)
    assert back.kinks == kinked.kinks
    assert back.kinks[0].where == "x[1]"


def test_round_trip_of_a_directional_failure() -> None:
    x = torch.linspace(-1.0, 1.0, 300, dtype=F64)
    result = gradcheck.check_function(SquareTripleBackward.apply, x)
    assert result.status == "failed"
    assert result.mode == "directional"
    assert result.worst is not None
    assert result.worst.direction is not None and result.worst.index is None
    assert roundtrip(result) == result


def test_round_trip_of_a_symbolic_kink() -> None:
    t = torch.tensor([-1.0, 0.0, 2.0], dtype=F64)
    result = gradcheck.check_function(torch.relu, t, oracle="sympy", expr="relu(x)")
    assert result.passed
    assert [note.where for note in result.kinks] == ["x[1]"]
    assert roundtrip(result) == result


def test_round_trip_of_an_inconclusive_result(inconclusive: CheckResult) -> None:
    # NaN != NaN, so compare the serialised forms and the NaN fields one by one.
    back = roundtrip(inconclusive)
    assert back.to_dict() == inconclusive.to_dict()
    assert back.status == "inconclusive"
    assert back.worst is None
    assert back.inconclusive == inconclusive.inconclusive
    assert math.isnan(back.max_abs_error) and math.isnan(back.error_estimate)
    with pytest.raises(gradcheck.InconclusiveCheck):
        back.raise_for_failure()


def test_round_trip_keeps_an_input_named_like_a_non_finite_float() -> None:
    def fn(inf: torch.Tensor) -> torch.Tensor:
        return SquareTripleBackward.apply(inf)

    result = gradcheck.check_function(fn, x3())
    assert result.worst is not None and result.worst.input == "inf"
    back = roundtrip(result)
    assert back.worst is not None
    assert back.worst.input == "inf"
    assert back == result


def test_from_dict_of_to_dict_without_json(failing: CheckResult) -> None:
    assert CheckResult.from_dict(failing.to_dict()) == failing


# -- raise_for_failure and assert_gradients_correct -------------------------------------------


def test_raise_for_failure_returns_self_on_pass(passing: CheckResult) -> None:
    assert passing.raise_for_failure() is passing


def test_raise_for_failure_raises_gradient_mismatch(failing: CheckResult) -> None:
    with pytest.raises(gradcheck.GradientMismatch) as info:
        failing.raise_for_failure()
    assert isinstance(info.value, AssertionError)
    assert isinstance(info.value, gradcheck.GradcheckError)
    assert info.value.result is failing
    assert str(info.value) == failing.message


def test_raise_for_failure_on_a_round_tripped_failure(failing: CheckResult) -> None:
    back = roundtrip(failing)
    with pytest.raises(gradcheck.GradientMismatch, match=r"Gradient mismatch") as info:
        back.raise_for_failure()
    assert info.value.result is back


def test_raise_for_failure_raises_inconclusive(inconclusive: CheckResult) -> None:
    with pytest.raises(gradcheck.InconclusiveCheck, match=r"Inconclusive: .*decided none") as info:
        inconclusive.raise_for_failure()
    assert info.value.result is inconclusive
    assert isinstance(info.value, gradcheck.GradcheckError)
    # Inconclusive is not a gradient bug: it must not read as a failed assertion.
    assert not isinstance(info.value, AssertionError)


def test_function_that_is_nan_next_to_the_point_is_inconclusive() -> None:
    result = gradcheck.check_function(torch.sqrt, torch.tensor([0.0], dtype=F64))
    assert result.status == "inconclusive"
    assert "NaN/Inf" in result.inconclusive[0].reason
    with pytest.raises(gradcheck.InconclusiveCheck) as info:
        result.raise_for_failure()
    assert info.value.result is result


def test_assert_gradients_correct_raises_on_a_wrong_backward() -> None:
    with pytest.raises(gradcheck.GradientMismatch, match=r"SquareTripleBackward\.apply") as info:
        gradcheck.assert_gradients_correct(SquareTripleBackward.apply, x3())
    result = info.value.result
    assert isinstance(result, CheckResult)
    assert result.status == "failed" and result.failed == 3


def test_assert_gradients_correct_is_an_assertion_error_for_pytest() -> None:
    with pytest.raises(AssertionError):
        gradcheck.assert_gradients_correct(SquareTripleBackward.apply, x3())


def test_assert_gradients_correct_returns_the_result_when_correct() -> None:
    result = gradcheck.assert_gradients_correct(Square.apply, x3())
    assert isinstance(result, CheckResult)
    assert result.passed and result.status == "passed"
    assert result.checked == 3
    assert result.name == "Square.apply"


def test_assert_gradients_correct_raises_inconclusive() -> None:
    with pytest.raises(gradcheck.InconclusiveCheck):
        gradcheck.assert_gradients_correct(Square.apply, x3(), oracle="forward")


def test_a_semantics_result_with_only_skipped_claims_is_skipped_not_failed() -> None:
    from gradcheck.report.document import result_summary
    from gradcheck.results import Claim, SemanticsResult

    skipped = Claim("zero_grad() leaves None", False, "zeros", skipped="not judged on torch 9.0")
    result = SemanticsResult("zero_grad", "f", False, (skipped,), 0.0)
    assert result.status == "skipped" and not result.passed
    assert result.raise_for_failure() is result  # nothing failed
    assert "could not be judged" in result.message and "skip" in result.message
    assert result_summary(result)["status"] == "skipped"
    failed = SemanticsResult("zero_grad", "f", False, (skipped, Claim("s", False, "d")), 0.0)
    assert failed.status == "failed" and result_summary(failed)["status"] == "failed"
    with pytest.raises(gradcheck.SemanticsViolation):
        failed.raise_for_failure()
