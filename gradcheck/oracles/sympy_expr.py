"""Parse SymPy-syntax strings into expressions without evaluating any Python.

The text is parsed with :func:`ast.parse` (which only builds a syntax tree) and the tree is
walked against a whitelist: numbers, the input symbols, ``+ - * / ** ^`` and unary minus, and
calls of the functions in :data:`FUNCTIONS`. Attribute access, subscripts, keywords, lambdas,
comparisons and every other construct are refused with an :class:`InvalidArgument` that points
at the offending piece. Symbols are real-valued, so ``Abs``, ``Max`` and ``Min`` differentiate
to ``sign`` and ``Heaviside`` (which the symbolic oracle treats as kinks); ``sign`` and
``Heaviside`` themselves differentiate to ``DiracDelta`` (0 away from the jump, no derivative at
it).

The work a string can cause is bounded before SymPy sees it and again before it is
differentiated: its length, runs of unary signs, the nesting of calls, the arguments of ``Max``
and ``Min`` (SymPy's derivative of a ``Max`` of n arguments compares every pair), and the size of
the expression tree. Each refusal names the limit and the fix.
"""

from __future__ import annotations

import ast
import difflib
import math
from collections.abc import Callable, Sequence

import sympy as sp

from gradcheck.errors import InvalidArgument

MAX_EXPRESSION_LENGTH = 10_000
MAX_EXPONENT = 1_000  # a literal 9**9**9 would make SymPy compute a huge integer
MAX_NUMBER_DIGITS = 1_000  # a numeric power may not build a number longer than this
MAX_DEPTH = 200  # nesting deeper than this is refused before Python's recursion limit
MAX_CALL_DEPTH = 32
"""Function calls nested deeper than this are refused: ``sin(sin(...))`` 190 deep overflows
SymPy's printer and Python's compiler inside lambdify."""
MAX_UNARY_SIGNS = 32
"""A run of more unary ``+``/``-`` signs than this is refused before parsing (9999 of them make
Python's parser raise MemoryError)."""
MAX_MINMAX_ARGUMENTS = 4
"""``Max``/``Min`` take at most this many arguments (after nested ones are flattened): the
derivative of a Max of n arguments holds n(n-1)/2 kinks, SymPy's work grows faster than that
(8 s at 16 arguments, over 10 minutes at 200), and the oracle resolves at most
``symbolic.MAX_KINK_ARGUMENTS`` = 8 kinks."""
MAX_NODES = 2_000
"""The parsed expression may hold at most this many tree nodes (shared subtrees counted each
time they occur, as SymPy's printer writes them)."""
MAX_DERIVATIVE_NODES = 50_000
"""A derivative may hold at most this many tree nodes before it is compiled by lambdify."""


def _sigmoid(x: sp.Expr) -> sp.Expr:
    return 1 / (1 + sp.exp(-x))


FUNCTIONS: dict[str, Callable[..., sp.Expr]] = {
    "exp": sp.exp,
    "log": sp.log,
    "sqrt": sp.sqrt,
    "sin": sp.sin,
    "cos": sp.cos,
    "tan": sp.tan,
    "asin": sp.asin,
    "acos": sp.acos,
    "atan": sp.atan,
    "atan2": sp.atan2,
    "sinh": sp.sinh,
    "cosh": sp.cosh,
    "tanh": sp.tanh,
    "asinh": sp.asinh,
    "acosh": sp.acosh,
    "atanh": sp.atanh,
    "erf": sp.erf,
    "erfc": sp.erfc,
    "Abs": sp.Abs,
    "abs": sp.Abs,
    "Max": sp.Max,
    "max": sp.Max,
    "Min": sp.Min,
    "min": sp.Min,
    "sign": sp.sign,
    "Heaviside": sp.Heaviside,
    "sigmoid": _sigmoid,
    "relu": lambda x: sp.Max(0, x),
    "softplus": lambda x: sp.log(1 + sp.exp(x)),
    "log1p": lambda x: sp.log(1 + x),
    "expm1": lambda x: sp.exp(x) - 1,
    "pow": lambda base, exponent: base**exponent,  # replaced by the checked power below
}
"""The functions a string expression may call (SymPy names and their torch-style aliases)."""

CONSTANTS: dict[str, sp.Expr] = {"pi": sp.pi, "E": sp.E}

_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}


def real_symbols(names: Sequence[str]) -> dict[str, sp.Symbol]:
    """One real-valued SymPy symbol per input name."""
    return {name: sp.Symbol(name, real=True) for name in names}


def parse_expression(text: str, names: Sequence[str]) -> sp.Expr:
    """Parse ``text`` over the symbols ``names``; refuse anything outside the whitelist."""
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise InvalidArgument(
            f"Got an expr of {len(text)} characters, but at most {MAX_EXPRESSION_LENGTH} are "
            "accepted. Pass a SymPy expression object for very large formulas."
        )
    # SymPy syntax: x^2 means x**2 (with the precedence of **, so replace before parsing).
    source = text.strip().replace("^", "**")
    _refuse_sign_runs(text, source)
    try:
        tree = ast.parse(source, mode="eval")
    except (RecursionError, MemoryError):
        raise InvalidArgument(
            f"Got an expr nested too deeply to parse ({len(text)} characters). Simplify it or "
            "pass a SymPy expression object."
        ) from None
    except SyntaxError as error:
        raise InvalidArgument(
            f"Got expr={text!r}, but it is not valid SymPy syntax ({error.msg} at column "
            f"{error.offset}). Write it like 'Max(0, w*x + b)' or '3*a**3 - b**2'."
        ) from None
    expr = _Builder(text, real_symbols(names)).build(tree.body)
    if expr.has(sp.zoo, sp.nan, sp.oo, sp.S.NegativeInfinity):
        raise InvalidArgument(
            f"Got expr={text!r}, which is not finite: SymPy reads it as {_short(expr)} (a "
            "division by zero such as x/0, or log(0)). Write the formula fn computes."
        )
    require_size(expr, MAX_NODES, f"expr={_short_text(text)}", "the parsed expression")
    return expr


def _refuse_sign_runs(text: str, source: str) -> None:
    """Refuse a run of more than :data:`MAX_UNARY_SIGNS` unary signs before Python parses it."""
    run = longest = 0
    for character in source:
        if character in "+-":
            run += 1
            longest = max(longest, run)
        elif not character.isspace():
            run = 0
    if longest > MAX_UNARY_SIGNS:
        raise InvalidArgument(
            f"Got expr={_short_text(text)} with a run of {longest} unary +/- signs, but at "
            f"most {MAX_UNARY_SIGNS} are accepted. Cancel the signs (--x is x)."
        )


def tree_size(expr: sp.Basic, limit: int) -> int:
    """The number of nodes of ``expr`` written out as a tree (a shared subtree counts each time
    it occurs), counted up to just past ``limit`` with the work bounded by the distinct nodes."""
    sizes: dict[sp.Basic, int] = {}
    stack: list[tuple[sp.Basic, bool]] = [(expr, False)]
    while stack:
        node, ready = stack.pop()
        if node in sizes:
            continue
        if ready:
            sizes[node] = min(limit + 1, 1 + sum(sizes[a] for a in node.args))
            continue
        stack.append((node, True))
        stack.extend((a, False) for a in node.args if a not in sizes)
    return sizes[expr]


def require_size(expr: sp.Basic, limit: int, given: str, what: str) -> None:
    """Refuse ``expr`` when it holds more than ``limit`` tree nodes."""
    if tree_size(expr, limit) > limit:
        raise InvalidArgument(
            f"Got {given}, but {what} holds more than {limit} nodes (the most accepted, to "
            "bound SymPy's work). Split fn into outputs with one expression each, or use "
            "oracle='finite_difference'."
        )


def _short_text(text: str, limit: int = 80) -> str:
    return repr(text) if len(text) <= limit else repr(text[: limit - 3] + "...")


def _short(expr: sp.Basic, limit: int = 80) -> str:
    text = str(expr)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def adopt_expression(expr: sp.Expr, names: Sequence[str]) -> sp.Expr:
    """Check a ready SymPy expression's symbols against ``names`` and make them real-valued."""
    if not isinstance(expr, sp.Basic):
        raise InvalidArgument(
            f"Got expr of type {type(expr).__name__}, but expr must be a SymPy expression or a "
            "string in SymPy syntax, such as 'sin(x)'."
        )
    symbols = real_symbols(names)
    for free in expr.free_symbols:
        if str(free) not in symbols:
            raise _unknown_symbol(str(free), str(expr), names)
    return expr.xreplace({free: symbols[str(free)] for free in expr.free_symbols})


def _unknown_symbol(name: str, text: str, names: Sequence[str]) -> InvalidArgument:
    close = difflib.get_close_matches(name, list(names), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return InvalidArgument(
        f"Got expr={text!r}, which uses the unknown symbol {name!r}; the inputs are named "
        f"{', '.join(names) or '(none)'}.{hint} Rename the symbol, or name the inputs with "
        "gradcheck.Symbolic(expr, symbols=(...)) in argument order."
    )


class _Builder:
    def __init__(self, text: str, symbols: dict[str, sp.Symbol]) -> None:
        self.text = text
        self.symbols = symbols
        self.calls = 0  # how deep the call being built is nested in others

    def refuse(self, node: ast.AST, what: str) -> InvalidArgument:
        column = getattr(node, "col_offset", 0) + 1
        return InvalidArgument(
            f"Got expr={_short_text(self.text)}, but {what} (column {column}) is not allowed. "
            "An expr may "
            "use numbers, the input symbols, + - * / ** and the functions "
            f"{', '.join(sorted(FUNCTIONS))}."
        )

    def build(self, node: ast.AST, depth: int = 0) -> sp.Expr:
        if depth > MAX_DEPTH:
            raise self.refuse(node, f"nesting deeper than {MAX_DEPTH} levels")
        depth += 1
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self.refuse(node, f"the constant {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise self.refuse(node, "a number that overflows float64")
            return sp.Integer(value) if isinstance(value, int) else sp.Rational(value)
        if isinstance(node, ast.Name):
            if node.id in self.symbols:
                return self.symbols[node.id]
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            raise _unknown_symbol(node.id, self.text, list(self.symbols))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.build(node.operand, depth)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            return self.power(node, self.build(node.left, depth), self.build(node.right, depth))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = self.build(node.left, depth), self.build(node.right, depth)
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        raise self.refuse(node, f"the construct {type(node).__name__!r}")

    def power(self, node: ast.AST, base: sp.Expr, exponent: sp.Expr) -> sp.Expr:
        """``base**exponent``, refusing exponents and numbers that would take unbounded work."""
        if exponent.is_number:
            if not exponent.is_finite or exponent.has(sp.nan):
                raise self.refuse(node, f"the non-finite exponent {exponent}")
            if abs(exponent) > MAX_EXPONENT:
                raise self.refuse(node, f"the exponent {exponent} (|exponent| > {MAX_EXPONENT})")
            if base.is_number and base.is_finite and base != 0:
                digits = float(abs(exponent)) * abs(math.log10(abs(float(sp.N(base, 15)))) + 1)
                if digits > MAX_NUMBER_DIGITS:
                    raise self.refuse(node, f"a power of about {digits:.0f} digits")
        return base**exponent

    def call(self, node: ast.Call, depth: int) -> sp.Expr:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            label = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise self.refuse(node, f"the call of {label!r}")
        if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
            raise self.refuse(node, f"keyword or starred arguments to {node.func.id!r}")
        if not node.args:
            raise self.refuse(node, f"the call of {node.func.id!r} without arguments")
        if self.calls >= MAX_CALL_DEPTH:
            raise self.refuse(node, f"function calls nested more than {MAX_CALL_DEPTH} deep")
        minmax = node.func.id in ("Max", "max", "Min", "min")
        if minmax and len(node.args) > MAX_MINMAX_ARGUMENTS:
            raise self.too_many_arguments(node, len(node.args))
        self.calls += 1
        try:
            arguments = [self.build(arg, depth) for arg in node.args]
        finally:
            self.calls -= 1
        if node.func.id == "pow" and len(arguments) == 2:
            return self.power(node, *arguments)
        try:
            built = FUNCTIONS[node.func.id](*arguments)
        except (TypeError, ValueError) as error:
            raise InvalidArgument(
                f"Got expr={_short_text(self.text)}, but {node.func.id}() rejected its "
                f"{len(arguments)} argument(s): {error}"
            ) from None
        if (
            minmax
            and isinstance(built, (sp.Max, sp.Min))
            and len(built.args) > (MAX_MINMAX_ARGUMENTS)
        ):
            raise self.too_many_arguments(node, len(built.args))
        return built

    def too_many_arguments(self, node: ast.Call, count: int) -> InvalidArgument:
        """The refusal of a Max/Min of ``count`` arguments (nested ones flattened)."""
        assert isinstance(node.func, ast.Name)
        return self.refuse(
            node,
            f"{node.func.id}() of {count} arguments (at most {MAX_MINMAX_ARGUMENTS}, nested "
            f"{node.func.id} flattened: its derivative has a kink for every pair, and SymPy's "
            "work grows faster still); split fn into outputs, or use "
            "oracle='finite_difference'",
        )
