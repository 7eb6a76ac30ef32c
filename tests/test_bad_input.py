"""Bad input to ``check_function`` raises ``InvalidArgument`` naming the argument and a fix.

Every case also checks that the caller's tensors come back untouched.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

import gradcheck
from gradcheck import InvalidArgument
from gradcheck.scenarios import planted

F64 = torch.float64


def x3() -> torch.Tensor:
    return torch.tensor([0.3, -1.2, 2.0], dtype=F64)


def test_invalid_argument_is_a_type_error_and_a_gradcheck_error() -> None:
    assert issubclass(InvalidArgument, TypeError)
    assert issubclass(InvalidArgument, gradcheck.GradcheckError)
    with pytest.raises(TypeError, match=r"fn must be callable"):
        gradcheck.check_function(42, x3())


# -- fn ----------------------------------------------------------------------------------------


def test_result_of_calling_fn_instead_of_fn() -> None:
    x = x3()
    with pytest.raises(
        InvalidArgument,
        match=r"Got fn=tensor\(.*fn must be callable.*check_function\(torch\.sin, x\)",
    ):
        gradcheck.check_function(torch.sin(x), x)


def test_non_callable_string_fn() -> None:
    with pytest.raises(InvalidArgument, match=r"Got fn='sin', but fn must be callable"):
        gradcheck.check_function("sin", x3())


# -- inputs ------------------------------------------------------------------------------------


def test_float_instead_of_tensor() -> None:
    with pytest.raises(
        InvalidArgument,
        match=r"Got inputs of type float.*torch\.tensor\(\.\.\., dtype=torch\.float64\)",
    ):
        gradcheck.check_function(torch.sin, 1.5)


def test_generator_of_tensors() -> None:
    with pytest.raises(InvalidArgument, match=r"Got inputs of type generator"):
        gradcheck.check_function(torch.sin, (t for t in [x3()]))


def test_list_with_a_float_names_its_position() -> None:
    with pytest.raises(
        InvalidArgument,
        match=r"Got inputs\[1\] of type float \(2\.0\).*lambda x: fn\(x, 3\)",
    ):
        gradcheck.check_function(lambda a, b: a * b, [x3(), 2.0])


def test_nested_sequence_names_its_position() -> None:
    with pytest.raises(InvalidArgument, match=r"Got inputs\[0\] of type tuple"):
        gradcheck.check_function(torch.sin, ((x3(),),))


def test_empty_tuple_of_inputs() -> None:
    with pytest.raises(InvalidArgument, match=r"Got inputs=\(\).*at least one tensor"):
        gradcheck.check_function(torch.sin, ())


@pytest.mark.parametrize(
    ("tensor", "dtype_text"),
    [
        (torch.tensor([1, 2, 3]), r"torch\.int64"),
        (torch.tensor([1, 2], dtype=torch.int32), r"torch\.int32"),
        (torch.tensor([True, False]), r"torch\.bool"),
    ],
    ids=["int64", "int32", "bool"],
)
def test_only_integer_or_boolean_inputs(tensor: torch.Tensor, dtype_text: str) -> None:
    with pytest.raises(
        InvalidArgument, match=rf"inputs\[0\] is {dtype_text}.*floating-point.*x\.double\(\)"
    ):
        gradcheck.check_function(lambda t: t * 2.0, tensor)


def test_several_integer_inputs_are_all_listed() -> None:
    a, b = torch.tensor([1, 2]), torch.tensor([True, False])
    with pytest.raises(
        InvalidArgument, match=r"inputs\[0\] is torch\.int64, inputs\[1\] is torch\.bool"
    ):
        gradcheck.check_function(lambda p, q: p * q, (a, b))


@pytest.mark.parametrize(
    ("values", "index"),
    [
        ([1.0, math.nan, 3.0], (1,)),
        ([math.inf, 2.0], (0,)),
        ([[1.0, 2.0], [3.0, -math.inf]], (1, 1)),
    ],
    ids=["nan", "inf", "neg-inf-2d"],
)
def test_non_finite_input_elements_are_inconclusive_and_the_rest_decided(
    values: list, index: tuple[int, ...]
) -> None:
    # Once refused outright; torch's own -inf masks (_safe_softmax) need the check to go on.
    t = torch.tensor(values, dtype=F64)
    result = gradcheck.check_function(torch.sin, t)
    assert result.status == "passed", result.message
    assert result.checked == t.numel() - 1
    where = f"x[{', '.join(map(str, index))}]"
    assert [note.where for note in result.inconclusive] == [where]
    assert "NaN/Inf here" in result.inconclusive[0].reason


def test_non_finite_second_input_marks_only_its_elements() -> None:
    y = torch.tensor([1.0, math.nan, math.nan], dtype=F64)
    result = gradcheck.check_function(lambda a, b: a * b, (x3(), y))
    assert result.status == "passed", result.message
    assert {note.where for note in result.inconclusive} >= {"b[1]", "b[2]"}


def test_a_wrong_gradient_next_to_a_non_finite_element_still_fails() -> None:
    t = torch.tensor([1.0, math.nan, 3.0], dtype=F64)
    result = gradcheck.check_function(planted.SinOffByOnePpm.apply, t)
    assert result.status == "failed", result.message


@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0)])
def test_an_empty_input_is_nothing_to_check(shape: tuple[int, ...]) -> None:
    # Once refused with InvalidArgument; torch passes such samples: nothing is there to judge.
    result = gradcheck.check_function(torch.sin, torch.empty(shape, dtype=F64))
    assert result.status == "skipped" and not result.passed
    assert "Nothing to check" in result.message
    assert [note.where for note in result.left_out] == ["x"]
    # Nothing checked proves nothing: a test that asserts correctness must not pass silently.
    with pytest.raises(gradcheck.InconclusiveCheck, match="Nothing to check"):
        result.raise_for_failure()
    with pytest.raises(gradcheck.InconclusiveCheck, match="Nothing to check"):
        gradcheck.assert_gradients_correct(torch.sin, torch.empty(shape, dtype=F64))


def test_a_negative_error_estimate_is_refused() -> None:
    with pytest.raises(gradcheck.InvalidArgument, match="an error estimate is a size"):
        gradcheck.check_values("g", [1.0], [1.0], oracle="finite_difference", errors=[-1e-3])


def test_an_unknown_oracle_in_the_tolerance_table_is_named() -> None:
    from gradcheck.tolerances import resolve_tolerance

    with pytest.raises(gradcheck.InvalidArgument, match="oracle='symbollic'"):
        resolve_tolerance(torch.float64, "symbollic")


def test_an_empty_input_beside_a_non_empty_one_leaves_the_other_checked() -> None:
    weight = torch.randn(3, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    result = gradcheck.check_function(torch.mm, (torch.empty(0, 3, dtype=F64), weight))
    assert result.status == "passed", result.message
    assert result.checked == 12
    assert "is empty" in result.left_out[0].reason


def test_the_semantics_checks_still_refuse_empty_or_non_finite_inputs() -> None:
    with pytest.raises(InvalidArgument, match=r"which has no elements"):
        gradcheck.check_accumulation(torch.sin, torch.empty(0, dtype=F64))
    with pytest.raises(InvalidArgument, match=r"NaN/Inf value"):
        gradcheck.check_accumulation(torch.sin, torch.tensor([1.0, math.nan], dtype=F64))


def test_an_unsupported_layout_is_named() -> None:
    mkldnn = torch.randn(3).to_mkldnn()  # float32 only
    with pytest.raises(InvalidArgument, match=r"inputs\[0\] with layout torch\._mkldnn.*to_dense"):
        gradcheck.check_function(torch.sin, mkldnn)


def test_meta_tensor_input() -> None:
    # A meta tensor has a shape but no values: there is no point to differentiate at.
    t = torch.empty(3, dtype=F64, device="meta")
    with pytest.raises(InvalidArgument, match=r"inputs\[0\]"):
        gradcheck.check_function(torch.sin, t)


# -- outputs -----------------------------------------------------------------------------------


def test_fn_returns_a_python_float() -> None:
    with pytest.raises(
        InvalidArgument,
        match=r"Got fn's output of type float.*must return a tensor.*not \.item\(\)",
    ):
        gradcheck.check_function(lambda x: torch.sin(x).sum().item(), x3())


def test_fn_returns_none() -> None:
    with pytest.raises(
        InvalidArgument, match=r"Got fn's output of type NoneType.*Return the tensor itself"
    ):
        gradcheck.check_function(lambda x: None, x3())


def test_fn_returns_tuple_with_a_non_tensor_names_its_position() -> None:
    with pytest.raises(InvalidArgument, match=r"Got fn's output\[1\] of type list"):
        gradcheck.check_function(lambda x: (torch.sin(x), x.tolist()), x3())


def test_a_complex_output_of_real_inputs_is_judged_as_its_real_and_imaginary_parts() -> None:
    # Once refused (60 OpInfo samples: fft.*, polar, view_as_complex ...); torch checks them.
    result = gradcheck.check_function(lambda x: torch.exp(x * (1 + 2j)), x3())
    assert result.status == "passed", result.message
    assert "view_as_real" in result.left_out[0].reason


def test_a_wrong_gradient_through_a_complex_output_fails() -> None:
    class Wrong(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * (1 + 2j)

        @staticmethod
        def backward(ctx, grad):
            return (grad * (1 - 2j)).real * (1 + 1e-6)

    result = gradcheck.check_function(Wrong.apply, x3())
    assert result.status == "failed", result.message


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: torch.ones(3, dtype=torch.float64),
        lambda x: x.detach() * 2,
        lambda x: torch.tensor(x.tolist(), dtype=torch.float64),
    ],
    ids=["constant", "detach", "tolist-roundtrip"],
)
def test_output_independent_of_inputs(fn) -> None:
    with pytest.raises(
        InvalidArgument,
        match=r"does not depend on any differentiable input.*without \.detach\(\)",
    ):
        gradcheck.check_function(fn, x3())


def test_output_computed_under_no_grad() -> None:
    def fn(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.sin(x)

    with pytest.raises(InvalidArgument, match=r"does not depend.*torch\.no_grad\(\)"):
        gradcheck.check_function(fn, x3())


@pytest.mark.parametrize(
    "fn",
    [lambda x: (x * 10).long(), lambda x: x > 0, lambda x: ((x > 0), x.round().int())],
    ids=["long", "bool", "tuple-of-int-outputs"],
)
def test_only_integer_outputs(fn) -> None:
    with pytest.raises(
        InvalidArgument,
        match=r"only integer or boolean outputs.*Return the floating-point result",
    ):
        gradcheck.check_function(fn, x3())


# -- oracle and expr ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("oracle", "suggestion"),
    [
        ("finite_diference", "finite_difference"),
        ("simpy", "sympy"),
        ("forwards", "forward"),
    ],
)
def test_misspelled_oracle_name_suggests_the_right_one(oracle: str, suggestion: str) -> None:
    with pytest.raises(
        InvalidArgument,
        match=rf"Got oracle='{oracle}', but oracle must be one of .*Did you mean '{suggestion}'\?",
    ):
        gradcheck.check_function(torch.sin, x3(), oracle=oracle)


@pytest.mark.parametrize("oracle", ["zzz", 3, None])
def test_unknown_oracle_lists_the_names(oracle: object) -> None:
    with pytest.raises(
        InvalidArgument,
        match=rf"Got oracle={re.escape(repr(oracle))}, .*'finite_difference', 'sympy', 'forward'",
    ):
        gradcheck.check_function(torch.sin, x3(), oracle=oracle)


def test_sympy_oracle_without_expr() -> None:
    with pytest.raises(
        InvalidArgument, match=r"Got expr=None, but oracle='sympy' needs .*expr='sin\(x\)'"
    ):
        gradcheck.check_function(torch.sin, x3(), oracle="sympy")


@pytest.mark.parametrize("oracle", ["finite_difference", "forward"])
def test_expr_with_a_non_sympy_oracle(oracle: str) -> None:
    with pytest.raises(
        InvalidArgument,
        match=rf"Got expr='sin\(x\)' with oracle='{oracle}'.*Pass oracle='sympy'.*or drop expr",
    ):
        gradcheck.check_function(torch.sin, x3(), oracle=oracle, expr="sin(x)")


def test_expr_with_an_oracle_object() -> None:
    with pytest.raises(
        InvalidArgument, match=r"Got expr='sin\(x\)' together with the oracle object.*Symbolic"
    ):
        gradcheck.check_function(
            torch.sin, x3(), oracle=gradcheck.FiniteDifference(), expr="sin(x)"
        )


def test_expr_with_an_unknown_symbol_suggests_a_close_match() -> None:
    def fn(alpha: torch.Tensor) -> torch.Tensor:
        return torch.sin(alpha)

    with pytest.raises(
        InvalidArgument,
        match=r"unknown symbol 'alpah'; the inputs are named alpha\. Did you mean 'alpha'\?",
    ):
        gradcheck.check_function(fn, x3(), oracle="sympy", expr="sin(alpah)")


def test_expr_with_an_unknown_symbol_names_the_inputs() -> None:
    with pytest.raises(
        InvalidArgument, match=r"unknown symbol 'q'; the inputs are named a, b\. Rename"
    ):
        gradcheck.check_function(lambda a, b: a * b, (x3(), x3()), oracle="sympy", expr="a*q")


def test_expr_of_the_wrong_type() -> None:
    with pytest.raises(InvalidArgument, match=r"Got expr of type int.*'sin\(x\)'"):
        gradcheck.check_function(torch.sin, x3(), oracle="sympy", expr=3)


def test_wrong_number_of_expressions() -> None:
    with pytest.raises(
        InvalidArgument, match=r"Got 2 expression\(s\) in expr, but fn returns 1 .*one expression"
    ):
        gradcheck.check_function(torch.sin, x3(), oracle="sympy", expr=("sin(x)", "cos(x)"))


def test_symbolic_with_the_wrong_number_of_symbol_names() -> None:
    oracle = gradcheck.Symbolic("a*b", symbols=("a",))
    with pytest.raises(
        InvalidArgument,
        match=r"Got symbols=\('a',\) \(1 names\), but fn takes 2 input\(s\)\. Give one name",
    ):
        gradcheck.check_function(lambda p, q: p * q, (x3(), x3()), oracle=oracle)


def test_symbolic_with_too_many_symbol_names() -> None:
    oracle = gradcheck.Symbolic("sin(a)", symbols=("a", "b"))
    with pytest.raises(InvalidArgument, match=r"\(2 names\), but fn takes 1 input\(s\)"):
        gradcheck.check_function(torch.sin, x3(), oracle=oracle)


def test_symbolic_with_non_identifier_symbols() -> None:
    with pytest.raises(InvalidArgument, match=r"Got symbols=\('1x',\).*identifier string"):
        gradcheck.Symbolic("sin(x)", symbols=("1x",))


def test_elementwise_expr_for_a_reducing_fn() -> None:
    with pytest.raises(
        InvalidArgument,
        match=r"expr sin\(x\) is elementwise over shape \(3,\), but fn's output has shape \(\)"
        r".*oracle='finite_difference'",
    ):
        gradcheck.check_function(lambda x: torch.sin(x).sum(), x3(), oracle="sympy", expr="sin(x)")


# -- tolerances, seed, name --------------------------------------------------------------------


@pytest.mark.parametrize("which", ["atol", "rtol"])
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (-1e-6, r"must be finite and >= 0"),
        (math.nan, r"must be finite and >= 0"),
        (math.inf, r"must be finite and >= 0"),
        ("1e-6", r"must be a non-negative number or None"),
        (True, r"must be a non-negative number or None"),
    ],
    ids=["negative", "nan", "inf", "string", "bool"],
)
def test_bad_tolerance(which: str, value: object, problem: str) -> None:
    with pytest.raises(
        InvalidArgument,
        match=rf"Got {which}={re.escape(repr(value))}, but {which} {problem}\. "
        rf"Pass a float such as {which}=1e-8",
    ):
        gradcheck.check_function(torch.sin, x3(), **{which: value})


@pytest.mark.parametrize("seed", [-1, True, False, 1.5, "0", None])
def test_bad_seed(seed: object) -> None:
    with pytest.raises(
        InvalidArgument,
        match=rf"Got seed={re.escape(repr(seed))}, but seed must be an integer in \[0, ",
    ):
        gradcheck.check_function(torch.sin, x3(), seed=seed)


def test_seed_beyond_the_generator_range() -> None:
    # torch generators take seeds below 2**64; a larger int must be refused as bad input.
    with pytest.raises(InvalidArgument, match=r"seed"):
        gradcheck.check_function(torch.sin, x3(), seed=2**64)


def test_largest_seed_with_random_directions() -> None:
    # 2**64 - 1 passes validation; the random-direction probes must not overflow on it.
    x = torch.linspace(-1.0, 1.0, 300, dtype=F64)
    try:
        result = gradcheck.check_function(torch.sin, x, seed=2**64 - 1)
    except InvalidArgument as error:
        assert "seed" in str(error)
    else:
        assert result.mode == "directional"
        assert result.passed


@pytest.mark.parametrize("name", [3, b"sin", ("sin",)])
def test_bad_name(name: object) -> None:
    with pytest.raises(
        InvalidArgument,
        match=rf"Got name={re.escape(repr(name))}, but name must be a string or None",
    ):
        gradcheck.check_function(torch.sin, x3(), name=name)


# -- the caller's state is left alone ----------------------------------------------------------


def _mutate_then_item(x: torch.Tensor) -> float:
    with torch.no_grad():
        x.mul_(100.0)
    return x.sum().item()


def _draw_then_return_none(x: torch.Tensor) -> None:
    torch.rand(5)
    return None


BAD_CALLS = {
    "not-callable": lambda x: gradcheck.check_function(torch.sin(x), x),
    "list-with-float": lambda x: gradcheck.check_function(lambda a, b: a * b, [x, 2.0]),
    "item": lambda x: gradcheck.check_function(lambda t: t.sum().item(), x),
    "mutate-then-item": lambda x: gradcheck.check_function(_mutate_then_item, x),
    "none": lambda x: gradcheck.check_function(_draw_then_return_none, x),
    "detach": lambda x: gradcheck.check_function(lambda t: t.detach() * 2, x),
    "integer-output": lambda x: gradcheck.check_function(lambda t: (t * 10).long(), x),
    "oracle-name": lambda x: gradcheck.check_function(torch.sin, x, oracle="finite_diference"),
    "sympy-no-expr": lambda x: gradcheck.check_function(torch.sin, x, oracle="sympy"),
    "unknown-symbol": lambda x: gradcheck.check_function(
        torch.sin, x, oracle="sympy", expr="sin(y)"
    ),
    "reducing-fn": lambda x: gradcheck.check_function(
        lambda t: torch.sin(t).sum(), x, oracle="sympy", expr="sin(x)"
    ),
    "atol": lambda x: gradcheck.check_function(torch.sin, x, atol=-1.0),
    "rtol": lambda x: gradcheck.check_function(torch.sin, x, rtol=math.nan),
    "seed": lambda x: gradcheck.check_function(torch.sin, x, seed=-3),
    "name": lambda x: gradcheck.check_function(torch.sin, x, name=7),
}


@pytest.mark.parametrize("requires_grad", [False, True], ids=["plain", "requires-grad"])
@pytest.mark.parametrize("call", list(BAD_CALLS.values()), ids=list(BAD_CALLS))
def test_bad_input_leaves_the_callers_tensor_alone(call, requires_grad: bool) -> None:
    x = x3().requires_grad_(requires_grad)
    before = x.detach().clone()
    version = x._version
    with pytest.raises(InvalidArgument):
        call(x)
    assert torch.equal(x.detach(), before)
    assert x.requires_grad is requires_grad
    assert x.grad is None
    assert x.is_leaf
    assert x.dtype == F64
    assert x._version == version


def test_non_finite_input_is_left_alone() -> None:
    x = torch.tensor([1.0, math.nan, 3.0], dtype=F64, requires_grad=True)
    before = x.detach().clone()
    gradcheck.check_function(torch.sin, x)
    torch.testing.assert_close(x.detach(), before, rtol=0, atol=0, equal_nan=True)
    assert x.requires_grad
    assert x.grad is None


def test_integer_input_is_left_alone() -> None:
    n = torch.tensor([1, 2, 3])
    with pytest.raises(InvalidArgument):
        gradcheck.check_function(lambda t: t * 2.0, n)
    assert torch.equal(n, torch.tensor([1, 2, 3]))
    assert n.dtype == torch.int64
    assert not n.requires_grad


def test_bad_input_keeps_grad_mode_and_rng_state() -> None:
    x = x3()
    state = torch.get_rng_state()
    with torch.no_grad():
        with pytest.raises(InvalidArgument):
            gradcheck.check_function(_draw_then_return_none, x)
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
    assert torch.equal(torch.get_rng_state(), state)


def _seeded_checks():
    """Every public check that takes a seed, called on a small valid problem."""
    from gradcheck.optimizers import check_optimizer_steps

    x = x3()
    linear = torch.nn.Linear(2, 1).double()
    point = torch.ones(1, 2, dtype=F64)
    return {
        "check_function": lambda s: gradcheck.check_function(torch.sin, x, seed=s),
        "oracle_gradient": lambda s: gradcheck.oracle_gradient(torch.sin, x, seed=s),
        "check_values": lambda s: gradcheck.check_values("v", x, x, oracle="sympy", seed=s),
        "check_accumulation": lambda s: gradcheck.check_accumulation(torch.sin, x, seed=s),
        "check_zero_grad": lambda s: gradcheck.check_zero_grad(torch.sin, x, seed=s),
        "check_tracking_off": lambda s: gradcheck.check_tracking_off(torch.sin, x, seed=s),
        "check_vector_backward": lambda s: gradcheck.check_vector_backward(torch.sin, x, seed=s),
        "check_module": lambda s: gradcheck.check_module(linear, point, seed=s),
        "check_device_parity": lambda s: gradcheck.check_device_parity(linear, point, seed=s),
        "check_optimizer_steps": lambda s: check_optimizer_steps(
            torch.optim.SGD, {"lr": 0.1}, seed=s
        ),
    }


@pytest.mark.parametrize("check", sorted(_seeded_checks()))
@pytest.mark.parametrize("seed", [-1, 2**63 - 1, 2**64, True, 1.5, "0"])
def test_every_public_check_refuses_a_bad_seed_the_same_way(check: str, seed: object) -> None:
    with pytest.raises(
        InvalidArgument,
        match=rf"^Got seed={re.escape(repr(seed))}, but seed must be an integer in "
        rf"\[0, {2**63 - 2}\] \(torch generators take 64-bit seeds\)\. Pass a small integer",
    ):
        _seeded_checks()[check](seed)


@pytest.mark.parametrize("check", sorted(_seeded_checks()))
def test_every_public_check_takes_the_largest_seed(check: str) -> None:
    result = _seeded_checks()[check](2**63 - 2)
    assert result is not None
