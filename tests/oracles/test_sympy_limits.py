"""The SymPy parser and oracle do bounded work on a user's string and refuse clearly."""

from __future__ import annotations

import time

import pytest
import torch

import gradcheck
from gradcheck.errors import InvalidArgument
from gradcheck.oracles.sympy_expr import parse_expression

X = torch.tensor([0.3, -0.7], dtype=torch.float64, requires_grad=True)


def _sympy(fn, expr, x=X):  # type: ignore[no-untyped-def]
    return gradcheck.check_function(fn, x, oracle="sympy", expr=expr)


@pytest.mark.parametrize("count", [40, 200])
def test_max_with_many_arguments_is_refused_at_once(count) -> None:
    expr = "Max(" + ", ".join(f"{i}*x" for i in range(1, count + 1)) + ")"
    started = time.perf_counter()
    with pytest.raises(InvalidArgument, match="arguments") as error:
        parse_expression(expr, ["x"])
    assert time.perf_counter() - started < 1.0
    assert "finite_difference" in str(error.value)


def test_nested_max_is_counted_after_flattening() -> None:
    with pytest.raises(InvalidArgument, match="arguments"):
        parse_expression("Max(Max(x, x**2, sin(x)), Max(cos(x), exp(x), x**3))", ["x"])


def test_an_exponential_tower_finishes_quickly() -> None:
    started = time.perf_counter()
    x = torch.tensor([1.0, 0.5, -1.0], dtype=torch.float64, requires_grad=True)
    result = _sympy(lambda x: x.exp().exp().exp().exp().exp(), "exp(exp(exp(exp(exp(x)))))", x)
    assert time.perf_counter() - started < 10.0
    assert result.status in ("passed", "inconclusive")
    assert result.checked >= 1  # -1.0 is finite all the way up


@pytest.mark.parametrize(
    ("expr", "fn"),
    [
        (
            "Heaviside(x)",
            lambda x: torch.heaviside(x, torch.tensor(0.5, dtype=x.dtype)).detach() + 0 * x,
        ),
        ("sign(x)", torch.sign),
    ],
)
def test_heaviside_and_sign_are_supported(expr, fn) -> None:
    result = _sympy(fn, expr)
    assert result.status == "passed", result.message


def test_heaviside_at_its_jump_is_inconclusive_with_the_reason() -> None:
    x = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    result = _sympy(torch.sign, "sign(x)", x)
    assert result.status in ("inconclusive", "passed")
    assert any("jump" in note.reason for note in result.inconclusive), result.message


def test_division_by_zero_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="not finite"):
        parse_expression("x/0", ["x"])
    with pytest.raises(InvalidArgument, match="not finite"):
        parse_expression("log(0)*x", ["x"])


def test_many_unary_minus_signs_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="unary"):
        parse_expression("-" * 9999 + "x", ["x"])
    assert parse_expression("--x", ["x"]) == parse_expression("x", ["x"])


def test_deeply_nested_calls_are_refused() -> None:
    started = time.perf_counter()
    with pytest.raises(InvalidArgument, match="nest"):
        parse_expression("sin(" * 190 + "x" + ")" * 190, ["x"])
    assert time.perf_counter() - started < 1.0


def test_moderate_nesting_still_checks() -> None:
    depth = 12
    expr = "sin(" * depth + "x" + ")" * depth

    def fn(x):  # type: ignore[no-untyped-def]
        for _ in range(depth):
            x = torch.sin(x)
        return x

    assert _sympy(fn, expr).status == "passed"


def test_an_expression_too_large_is_refused_before_differentiation() -> None:
    terms = " + ".join(
        f"sin({i}*x)*cos({i}*x)*exp({i}*x)*tanh({i}*x)*log(1 + {i}*x**2)" for i in range(1, 150)
    )
    with pytest.raises(InvalidArgument, match="nodes"):
        parse_expression(terms, ["x"])
