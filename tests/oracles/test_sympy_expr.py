"""The whitelisted expression parser: what it accepts, and what it refuses without running it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sympy as sp

from gradcheck import InvalidArgument
from gradcheck.oracles.sympy_expr import (
    FUNCTIONS,
    MAX_EXPONENT,
    MAX_EXPRESSION_LENGTH,
    adopt_expression,
    parse_expression,
)

X = sp.Symbol("x", real=True)
Y = sp.Symbol("y", real=True)
NAMES = ("x", "y")
REPO = Path(__file__).resolve().parents[2]


def parse(text: str) -> sp.Expr:
    return parse_expression(text, NAMES)


# -- accepted ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3", sp.Integer(3)),
        ("0.5", sp.Rational(1, 2)),
        ("2.5*x", sp.Rational(5, 2) * X),
        ("x", X),
        ("x + y", X + Y),
        ("x - y", X - Y),
        ("x * y", X * Y),
        ("x / y", X / Y),
        ("x ** 3", X**3),
        ("x ^ 3", X**3),
        ("x**-2", X**-2),
        ("-x", -X),
        ("+x", X),
        ("-(x + y)", -X - Y),
        ("x - -y", X + Y),
        ("3*x**2 - y**2/2", 3 * X**2 - Y**2 / 2),
        ("(x + 1)**2", (X + 1) ** 2),
        ("  x*y  ", X * Y),
    ],
)
def test_numbers_symbols_and_operators(text: str, expected: sp.Expr) -> None:
    result = parse(text)
    assert result == expected
    assert sp.simplify(result - expected) == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x^2 + 1", X**2 + 1),
        ("2*x^2", 2 * X**2),
        ("-x^2", -(X**2)),
        ("x^2/2", X**2 / 2),
        ("exp(-x^2/2)", sp.exp(-(X**2) / 2)),
        ("x^2^3", X**8),
        ("x^y - y^x", X**Y - Y**X),
    ],
)
def test_caret_is_power_with_the_precedence_of_double_star(text: str, expected: sp.Expr) -> None:
    # SymPy syntax: x^2 means x**2, so it must bind (and associate) exactly like **.
    assert parse(text) == expected
    assert parse(text) == parse(text.replace("^", "**"))


def test_float_literals_are_exact_rationals() -> None:
    result = parse("0.1*x")
    assert result == sp.Rational(0.1) * X
    assert not result.atoms(sp.Float)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("exp(x)", sp.exp(X)),
        ("log(x)", sp.log(X)),
        ("sqrt(x)", sp.sqrt(X)),
        ("sin(x) + cos(y)", sp.sin(X) + sp.cos(Y)),
        ("tan(x)", sp.tan(X)),
        ("asin(x) + acos(x) + atan(x)", sp.asin(X) + sp.acos(X) + sp.atan(X)),
        ("atan2(y, x)", sp.atan2(Y, X)),
        ("sinh(x) * cosh(x) / tanh(x)", sp.sinh(X) * sp.cosh(X) / sp.tanh(X)),
        ("asinh(x) + acosh(x) + atanh(x)", sp.asinh(X) + sp.acosh(X) + sp.atanh(X)),
        ("erf(x) + erfc(y)", sp.erf(X) + sp.erfc(Y)),
        ("Abs(x)", sp.Abs(X)),
        ("abs(x)", sp.Abs(X)),
        ("Max(0, x*y + 1)", sp.Max(0, X * Y + 1)),
        ("max(x, y)", sp.Max(X, Y)),
        ("Min(x, y)", sp.Min(X, Y)),
        ("min(x, 2)", sp.Min(X, 2)),
        ("sign(x)", sp.sign(X)),
        ("Heaviside(x)", sp.Heaviside(X)),
        ("relu(x)", sp.Max(0, X)),
        ("sigmoid(x)", 1 / (1 + sp.exp(-X))),
        ("softplus(x)", sp.log(1 + sp.exp(X))),
        ("log1p(x)", sp.log(1 + X)),
        ("expm1(x)", sp.exp(X) - 1),
        ("pow(x, 3)", X**3),
        ("exp(-x**2/2)", sp.exp(-(X**2) / 2)),
    ],
)
def test_whitelisted_calls(text: str, expected: sp.Expr) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pi", sp.pi),
        ("E", sp.E),
        ("pi*x", sp.pi * X),
        ("E**x", sp.exp(X)),
        ("sin(pi/2) + x", 1 + X),
    ],
)
def test_constants(text: str, expected: sp.Expr) -> None:
    assert parse(text) == expected


def test_input_names_take_precedence_over_constants() -> None:
    assert parse_expression("E*pi", ["E", "pi"]) == sp.Symbol("E", real=True) * sp.Symbol(
        "pi", real=True
    )


def test_symbols_are_real() -> None:
    result = parse("x*y")
    assert result.free_symbols == {X, Y}
    assert all(s.is_real for s in result.free_symbols)
    # Only real symbols differentiate Abs to sign (a complex symbol gives re/im terms).
    assert sp.diff(parse("Abs(x)"), X) == sp.sign(X)
    assert sp.diff(parse("relu(x)"), X) == sp.Heaviside(X)


def test_all_whitelisted_names_are_callable() -> None:
    for name, function in FUNCTIONS.items():
        arguments = "x, y" if name in {"atan2", "Max", "max", "Min", "min", "pow"} else "x"
        result = parse(f"{name}({arguments})")
        expected = function(X, Y) if "," in arguments else function(X)
        assert result == expected, name


# -- refused without executing anything --------------------------------------------------------


def _side_effects(path: Path) -> list[str]:
    p = str(path)
    return [
        f"__import__('os').system('touch {p}')",
        f"open('{p}', 'w')",
        f"exec(\"open('{p}', 'w')\")",
        f"eval(\"open('{p}', 'w')\")",
        f"(lambda: open('{p}', 'w'))()",
        f"[open('{p}', 'w') for _ in (1,)]",
        f"x + open('{p}', 'w')",
        f"sin(open('{p}', 'w'))",
        f"x.__class__.__base__.__subclasses__()[0]('{p}')",
        f"Max(x, open('{p}', 'w'))",
        f"getattr(__import__('os'), 'system')('touch {p}')",
    ]


@pytest.mark.parametrize("index", range(len(_side_effects(Path("/p")))))
def test_code_is_never_executed(tmp_path: Path, index: int) -> None:
    target = tmp_path / "pwned"
    text = _side_effects(target)[index]
    with pytest.raises(InvalidArgument, match=r"is not allowed|unknown symbol"):
        parse(text)
    assert not target.exists()


def test_os_system_payload_is_refused_at_the_attribute_call() -> None:
    target = Path("/tmp/pwned")
    existed = target.exists()
    with pytest.raises(
        InvalidArgument, match=r"the call of \"__import__\('os'\)\.system\" \(column 1\)"
    ):
        parse("__import__('os').system('touch /tmp/pwned')")
    assert target.exists() == existed


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("x.__class__", r"the construct 'Attribute' \(column 1\)"),
        ("sin(x).func", r"the construct 'Attribute'"),
        ("1 + x[0]", r"the construct 'Subscript' \(column 5\)"),
        ("lambda: x", r"the construct 'Lambda'"),
        ("[x for x in (1, 2)]", r"the construct 'ListComp'"),
        ("(x for x in (1, 2))", r"the construct 'GeneratorExp'"),
        ("{x for x in (1, 2)}", r"the construct 'SetComp'"),
        ("{x: 1 for x in (1, 2)}", r"the construct 'DictComp'"),
        ("Max(x, evaluate=False)", r"keyword or starred arguments to 'Max'"),
        ("sin(x=1)", r"keyword or starred arguments to 'sin'"),
        ("Max(*x)", r"keyword or starred arguments to 'Max'"),
        ("'x'", r"the constant 'x'"),
        ("x + 'y'", r"the constant 'y' \(column 5\)"),
        ("b'x'", r"the constant b'x'"),
        ("f'{x}'", r"the construct 'JoinedStr'"),
        ("x < 1", r"the construct 'Compare'"),
        ("x == y", r"the construct 'Compare'"),
        ("eval('1')", r"the call of 'eval'"),
        ("open('f')", r"the call of 'open'"),
        ("exec('1')", r"the call of 'exec'"),
        ("getattr(x, 'y')", r"the call of 'getattr'"),
        ("sympify('x')", r"the call of 'sympify'"),
        ("True", r"the constant True"),
        ("x + False", r"the constant False"),
        ("None", r"the constant None"),
        ("...", r"the constant Ellipsis"),
        ("1j", r"the constant 1j"),
        ("x if y else 1", r"the construct 'IfExp'"),
        ("x and y", r"the construct 'BoolOp'"),
        ("not x", r"the construct 'UnaryOp'"),
        ("~x", r"the construct 'UnaryOp'"),
        ("x // 2", r"the construct 'BinOp'"),
        ("x % 2", r"the construct 'BinOp'"),
        ("x & y", r"the construct 'BinOp'"),
        ("(x, y)", r"the construct 'Tuple'"),
        ("[x]", r"the construct 'List'"),
        ("{'a': x}", r"the construct 'Dict'"),
        ("(y := x)", r"the construct 'NamedExpr'"),
        ("exp(x)(y)", r"the call of 'exp\(x\)'"),
    ],
)
def test_refused_constructs(text: str, problem: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"Got expr=.*, but {problem}.* is not allowed"):
        parse(text)


def test_refusal_lists_the_allowed_functions() -> None:
    with pytest.raises(InvalidArgument) as info:
        parse("x.real")
    message = str(info.value)
    assert "+ - * / **" in message
    for name in ("exp", "log", "Max", "relu", "sigmoid"):
        assert name in message


@pytest.mark.parametrize(
    ("text", "unknown", "hint"),
    [
        ("sin(z)", "z", ""),
        ("x*yy", "yy", " Did you mean 'y'\\?"),
        ("sin", "sin", ""),
        ("x**zoo", "zoo", ""),
        ("oo*x", "oo", ""),
        ("I*x", "I", ""),
    ],
)
def test_unknown_names_are_refused(text: str, unknown: str, hint: str) -> None:
    with pytest.raises(
        InvalidArgument,
        match=rf"uses the unknown symbol '{unknown}'; the inputs are named x, y\.{hint}",
    ):
        parse(text)


def test_unknown_symbol_suggests_a_close_match() -> None:
    with pytest.raises(InvalidArgument, match=r"unknown symbol 'thta'.*Did you mean 'theta'\?"):
        parse_expression("sin(thta)", ["theta", "phi"])


@pytest.mark.parametrize(
    ("text", "function"),
    [("atan2(x)", "atan2"), ("sin(x, y)", "sin")],
)
def test_whitelisted_call_with_wrong_arity(text: str, function: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"but {function}\(\) rejected its"):
        parse(text)


@pytest.mark.parametrize("text", ["exp()", "Max()", "pow()"])
def test_call_without_arguments_is_refused(text: str) -> None:
    with pytest.raises(InvalidArgument, match=r"without arguments"):
        parse(text)


def test_over_long_input_is_refused_before_parsing() -> None:
    text = "x+" * (MAX_EXPRESSION_LENGTH // 2) + "x"
    assert len(text) == MAX_EXPRESSION_LENGTH + 1
    started = time.perf_counter()
    with pytest.raises(
        InvalidArgument,
        match=rf"expr of {MAX_EXPRESSION_LENGTH + 1} characters, but at most "
        rf"{MAX_EXPRESSION_LENGTH} are accepted",
    ):
        parse(text)
    assert time.perf_counter() - started < 1.0


def test_input_at_the_length_limit_is_not_refused_for_length() -> None:
    text = " " * (MAX_EXPRESSION_LENGTH - 1) + "x"
    assert parse(text) == X


@pytest.mark.parametrize("text", ["9**9**9", "x**(9**9)", "x**(-9**9)", "x^10001", "2**1001"])
def test_huge_exponent_is_refused_quickly(text: str) -> None:
    started = time.perf_counter()
    with pytest.raises(InvalidArgument, match=rf"\(\|exponent\| > {MAX_EXPONENT}\)"):
        parse(text)
    assert time.perf_counter() - started < 1.0


def test_exponent_at_the_limit_is_accepted() -> None:
    assert parse(f"x**{MAX_EXPONENT}") == X**MAX_EXPONENT


_CHILD = textwrap.dedent(
    """
    import signal, sys
    from gradcheck import InvalidArgument
    from gradcheck.oracles.sympy_expr import parse_expression
    signal.alarm(5)  # no handler: SIGALRM kills the process even inside a C computation
    try:
        parse_expression(sys.argv[1], ["x"])
    except InvalidArgument:
        outcome = "refused"
    else:
        outcome = "accepted"
    signal.alarm(0)  # the bound is on parsing, not on the interpreter's shutdown under load
    print(outcome)
    """
)


@pytest.mark.parametrize(
    "text",
    [
        "pow(9, pow(9, 9))",
        "pow(x, 9**9)",
        "((9**1000)**1000)**1000",
    ],
)
def test_huge_powers_cannot_bypass_the_exponent_limit(text: str) -> None:
    # Run in a child process: a bypass computes an integer with hundreds of millions of digits.
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, text],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, f"rc={child.returncode}: {child.stderr[-500:]}"
    assert child.stdout.strip() == "refused"


@pytest.mark.parametrize("text", ["x**(0/0)", "x**(0*(1/0))"])
def test_undefined_exponent_is_refused(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse(text)


def test_overflowing_float_literal_is_not_silently_zero() -> None:
    try:
        result = parse("1e999*x")
    except InvalidArgument as error:
        assert "1e999" in str(error) or "inf" in str(error)
    else:
        assert result != 0
        assert not result.is_zero


@pytest.mark.parametrize(
    "text",
    ["x+" * 3000 + "x", "-" * 3000 + "x", "sin(" * 40 + "x" + ")" * 40],
    ids=["long-sum", "deep-unary-minus", "nested-calls"],
)
def test_deep_expressions_parse_or_are_refused(text: str) -> None:
    # Anything under the length limit must give an expression or an InvalidArgument,
    # never a RecursionError.
    assert len(text) <= MAX_EXPRESSION_LENGTH
    try:
        result = parse(text)
    except InvalidArgument:
        return
    assert result.free_symbols == {X}


@pytest.mark.parametrize("text", ["sin(x", "x +", "x = 1", "", "import os", "x y"])
def test_syntax_errors(text: str) -> None:
    with pytest.raises(
        InvalidArgument,
        match=r"Got expr=.*, but it is not valid SymPy syntax \(.* at column \d+\)\. "
        r"Write it like 'Max\(0, w\*x \+ b\)'",
    ):
        parse(text)


# -- adopt_expression ---------------------------------------------------------------------------


def test_adopt_makes_known_symbols_real() -> None:
    plain = sp.Symbol("x")
    assert plain.is_real is None
    result = adopt_expression(sp.sin(plain) * sp.Symbol("y", positive=True), NAMES)
    assert result == sp.sin(X) * Y
    assert all(s.is_real for s in result.free_symbols)
    assert plain not in result.free_symbols
    assert sp.diff(adopt_expression(sp.Abs(plain), NAMES), X) == sp.sign(X)


def test_adopt_accepts_a_subset_of_the_names_and_constants() -> None:
    assert adopt_expression(sp.Symbol("y") ** 2, NAMES) == Y**2
    assert adopt_expression(sp.Integer(7), NAMES) == 7
    assert adopt_expression(sp.pi * sp.Symbol("x"), NAMES) == sp.pi * X


def test_adopt_refuses_unknown_symbols() -> None:
    with pytest.raises(
        InvalidArgument, match=r"uses the unknown symbol 'w'; the inputs are named x, y\."
    ):
        adopt_expression(sp.Symbol("x") * sp.Symbol("w"), NAMES)


def test_adopt_suggests_a_close_match() -> None:
    with pytest.raises(InvalidArgument, match=r"unknown symbol 'alpah'.*Did you mean 'alpha'\?"):
        adopt_expression(sp.sin(sp.Symbol("alpah")), ["alpha", "beta"])


@pytest.mark.parametrize("expr", ["sin(x)", 3.0, None, lambda x: x])
def test_adopt_refuses_non_sympy_objects(expr: object) -> None:
    with pytest.raises(
        InvalidArgument,
        match=rf"Got expr of type {type(expr).__name__}, but expr must be a SymPy expression",
    ):
        adopt_expression(expr, NAMES)  # type: ignore[arg-type]
