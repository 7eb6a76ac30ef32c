"""The exact oracle: SymPy derivatives evaluated with mpmath (``oracle="sympy"``).

``expr`` describes each output elementwise over the broadcast of the inputs it names. The oracle
differentiates it exactly with :func:`sympy.diff`, evaluates the derivative at every element
with mpmath at ``dps`` significant digits (30 by default), contracts it with the cotangent and
sums over broadcast dimensions in mpmath, then rounds to float64.

Kinks: derivatives of ``Max``, ``Min``, ``Abs`` and ``relu`` contain ``Heaviside(a)`` and
``sign(a)``. Where such an argument ``a`` is exactly 0, the oracle evaluates the derivative on
both sides (``Heaviside -> 0 or 1``, ``sign -> -1 or 1``, one choice per distinct argument up to
sign) and reports the interval they span: any autograd value inside it is a valid subgradient.

Jumps: ``Heaviside(a)`` and ``sign(a)`` in ``expr`` differentiate to ``DiracDelta(a)``: 0 where
``a`` is not 0; where it is 0 the function jumps and has no derivative, so that element is
inconclusive with the reason. The work is bounded: a derivative larger than
:data:`~gradcheck.oracles.sympy_expr.MAX_DERIVATIVE_NODES` nodes is refused before lambdify, an
exponential whose argument exceeds :data:`MAX_EXP_ARGUMENT` is not evaluated (mpmath would build
a number with billions of digits: ``exp(exp(exp(exp(exp(1)))))``), and output elements with a
zero cotangent (NaN/Inf at the input) are not evaluated at all.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import mpmath
import sympy as sp
import torch

from gradcheck.errors import InvalidArgument
from gradcheck.oracles.base import EPS64, Estimate, Oracle, Probes, Problem
from gradcheck.oracles.sympy_expr import (
    MAX_DERIVATIVE_NODES,
    adopt_expression,
    parse_expression,
    real_symbols,
    require_size,
)

MAX_KINK_ARGUMENTS = 8

MAX_EXP_ARGUMENT = 1e5
"""mpmath evaluates ``exp``, ``sinh`` and ``cosh`` only for arguments up to this size: beyond
it the value is far outside float64 (e**709 overflows) and its digits cost unbounded work."""

JUMP_REASON = (
    "the exact derivative has a jump here (Heaviside or sign at 0, DiracDelta): there is no "
    "derivative at a jump"
)
BEYOND_EXP_REASON = (
    f"the exact derivative holds an exponential of an argument beyond {MAX_EXP_ARGUMENT:g} here, "
    "which is not evaluated (far outside float64, unbounded work)"
)


class _BeyondExponent(ArithmeticError):
    """An exponential too large to evaluate."""


def _bounded(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def bounded(argument: Any) -> Any:
        if abs(mpmath.mpf(argument)) > MAX_EXP_ARGUMENT:
            raise _BeyondExponent
        return function(argument)

    return bounded


_BOUNDED_MPMATH = {name: _bounded(getattr(mpmath, name)) for name in ("exp", "sinh", "cosh")}
_MODULES = [_BOUNDED_MPMATH, "mpmath"]


class _Derivative:
    """``d expr / d symbol`` compiled to mpmath, with its kink arguments made explicit."""

    def __init__(self, derivative: sp.Expr, symbols: list[sp.Symbol]) -> None:
        require_size(derivative, MAX_DERIVATIVE_NODES, "an expr", "its derivative")
        deltas = derivative.atoms(sp.DiracDelta)
        self.jumps: list[Callable[..., Any]] = [
            sp.lambdify(symbols, delta.args[0], modules=_MODULES)
            for delta in deltas
            if delta.args[0].free_symbols
        ]
        derivative = derivative.xreplace(dict.fromkeys(deltas, sp.Integer(0)))
        if derivative.has(sp.zoo, sp.nan, sp.oo, sp.S.NegativeInfinity):
            raise InvalidArgument(
                f"The derivative {derivative} is not finite anywhere; write the formula fn "
                "computes, without a division by zero."
            )
        atoms = [a for a in derivative.atoms(sp.Heaviside, sp.sign) if a.args[0].free_symbols]
        arguments: list[sp.Expr] = []
        for atom in atoms:
            argument = atom.args[0]
            canonical = -argument if argument.could_extract_minus_sign() else argument
            if canonical not in arguments:
                arguments.append(canonical)
        if len(arguments) > MAX_KINK_ARGUMENTS:
            raise InvalidArgument(
                f"The derivative {derivative} has {len(arguments)} distinct kink arguments; at "
                f"most {MAX_KINK_ARGUMENTS} are supported. Split the expression into outputs."
            )
        sides = [sp.Symbol(f"_side{i}", real=True) for i in range(len(arguments))]
        replacements = {}
        for atom in atoms:
            argument = atom.args[0]
            flipped = argument.could_extract_minus_sign()
            side = sides[arguments.index(-argument if flipped else argument)]
            value = 1 - side if flipped else side  # side = 1: the canonical argument is > 0
            replacements[atom] = value if atom.func is sp.Heaviside else 2 * value - 1
        self.evaluate: Callable[..., Any] = sp.lambdify(
            symbols + sides, derivative.xreplace(replacements), modules=_MODULES
        )
        self.arguments: list[Callable[..., Any]] = [
            sp.lambdify(symbols, argument, modules=_MODULES) for argument in arguments
        ]

    def undefined(self, point: Sequence[float]) -> str | None:
        """Why the derivative cannot be evaluated at ``point`` (a jump, an exponential beyond
        :data:`MAX_EXP_ARGUMENT`), or None."""
        values = [mpmath.mpf(value) for value in point]
        try:
            if any(jump(*values) == 0 for jump in self.jumps):
                return JUMP_REASON
            self.interval(values)
        except _BeyondExponent:
            return BEYOND_EXP_REASON
        return None

    def stable_interval(self, point: Sequence[float], dps: int) -> tuple[Any, Any]:
        """:meth:`interval` at ``dps`` digits or more: the precision doubles (up to 8x) until two
        evaluations agree to 20 digits, since formulas such as ``1 - tanh(x)**2`` lose digits."""
        previous = None
        for precision in (dps, 2 * dps, 4 * dps, 8 * dps):
            with mpmath.workdps(precision):
                try:
                    current = self.interval([mpmath.mpf(value) for value in point])
                except _BeyondExponent:
                    return mpmath.nan, mpmath.nan
            if previous is not None and all(
                _finite_real(a) and _finite_real(b) and abs(a - b) <= abs(b) * mpmath.mpf(10) ** -20
                for a, b in zip(previous, current)
            ):
                break
            if not all(_finite_real(b) for b in current):
                break
            previous = current
        return current

    def interval(self, values: Sequence[Any]) -> tuple[Any, Any]:
        """The derivative at ``values``: equal bounds off kinks, the side-limit span on them."""
        choices: list[tuple[int, ...]] = []
        for argument in self.arguments:
            a = argument(*values)
            choices.append((0, 1) if a == 0 else (1,) if a > 0 else (0,))
        try:
            results = [self.evaluate(*values, *sides) for sides in itertools.product(*choices)]
            return min(results), max(results)
        except (ZeroDivisionError, ValueError, TypeError):  # 1/0, log(0), complex comparisons
            return mpmath.nan, mpmath.nan


class Symbolic(Oracle):
    """Exact derivatives of ``expr`` (a SymPy expression or string, or one per output).

    ``symbols`` names the function's arguments in order (default: the parameter names of ``fn``);
    ``dps`` is the mpmath precision in significant digits (at least 30).
    """

    name = "sympy"
    prefers_basis = True

    def __init__(
        self,
        expr: str | sp.Expr | Sequence[str | sp.Expr],
        *,
        symbols: Sequence[str] | None = None,
        dps: int = 30,
    ) -> None:
        if expr is None:
            raise InvalidArgument(
                "Got expr=None, but oracle='sympy' needs the function's formula. Pass "
                "expr='sin(x)' (SymPy syntax over the input names) or a SymPy expression."
            )
        if isinstance(dps, bool) or not isinstance(dps, int) or dps < 30:
            raise InvalidArgument(f"Got dps={dps!r}, but dps must be an integer >= 30.")
        if symbols is not None:
            symbols = tuple(symbols)
            if not all(isinstance(s, str) and s.isidentifier() for s in symbols):
                raise InvalidArgument(
                    f"Got symbols={symbols!r}, but each symbol must be an identifier string, "
                    "one per argument of fn, such as symbols=('x', 'w', 'b')."
                )
        self.expr = expr
        self.symbols = symbols
        self.dps = dps

    def describe(self) -> str:
        """Constructor text for reproduction lines."""
        extra = f", symbols={self.symbols!r}" if self.symbols is not None else ""
        return f"Symbolic({self.expr!r}{extra})"

    def input_names(self, default: tuple[str, ...]) -> tuple[str, ...]:
        """The names the expression uses for the arguments: ``symbols`` if given."""
        if self.symbols is None:
            return default
        if len(self.symbols) != len(default):
            raise InvalidArgument(
                f"Got symbols={self.symbols!r} ({len(self.symbols)} names), but fn takes "
                f"{len(default)} input(s). Give one name per input, in order."
            )
        return self.symbols

    def expressions(self, names: Sequence[str], outputs: int) -> list[sp.Expr]:
        """The parsed expressions, one per floating-point output, over real symbols."""
        items = list(self.expr) if isinstance(self.expr, (list, tuple)) else [self.expr]
        if len(items) != outputs:
            raise InvalidArgument(
                f"Got {len(items)} expression(s) in expr, but fn returns {outputs} "
                "floating-point output(s). Pass one expression per output, as a tuple."
            )
        return [
            parse_expression(item, names)
            if isinstance(item, str)
            else adopt_expression(item, names)
            for item in items
        ]

    def of_gradient(
        self, names: Sequence[str], wrt: Sequence[str], cotangent_names: Sequence[str]
    ) -> Symbolic:
        """The oracle of autograd's gradient of this expression: for each input in ``wrt``,
        ``sum_j v_j * d expr_j / d x`` elementwise, with one symbol per output's cotangent
        (``cotangent_names``, extra arguments after ``names``), for a check of second order."""
        everything = (*names, *cotangent_names)
        expressions = self.expressions(tuple(names), len(cotangent_names))
        symbols = real_symbols(everything)
        derived = tuple(
            sp.Add(
                *(
                    symbols[v] * sp.diff(expression, symbols[x])
                    for v, expression in zip(cotangent_names, expressions)
                )
            )
            for x in wrt
        )
        return Symbolic(derived, symbols=everything, dps=self.dps)

    def estimate(self, problem: Problem, probes: Probes) -> Estimate:
        """Exact gradient of ``L`` (as intervals on kinks), projected onto the probes."""
        used = [j for j, v in enumerate(problem.cotangents) if v is not None]
        expressions = self.expressions(problem.names, len(used))
        symbols = list(real_symbols(problem.names).values())
        lows: list[Any] = [mpmath.mpf(0)] * problem.size
        highs: list[Any] = [mpmath.mpf(0)] * problem.size
        reasons: list[str | None] = [None] * problem.size
        with mpmath.workdps(self.dps):
            for j, expression in zip(used, expressions):
                cotangent = problem.cotangents[j]
                assert cotangent is not None
                self._accumulate(problem, expression, symbols, cotangent, lows, highs, reasons)
            return _project(problem, probes, lows, highs, reasons)

    def _accumulate(
        self,
        problem: Problem,
        expression: sp.Expr,
        symbols: list[sp.Symbol],
        cotangent: torch.Tensor,
        lows: list[Any],
        highs: list[Any],
        reasons: list[str | None],
    ) -> None:
        used_shapes = [
            problem.arguments[i].shape
            for i, symbol in enumerate(symbols)
            if symbol in expression.free_symbols
        ]
        shape = torch.broadcast_shapes(*used_shapes) if used_shapes else cotangent.shape
        if tuple(shape) != tuple(cotangent.shape):
            raise InvalidArgument(
                f"expr {expression} is elementwise over shape {tuple(shape)}, but fn's output has "
                f"shape {tuple(cotangent.shape)}. The sympy oracle needs fn to be elementwise "
                "over the broadcast inputs (no reductions); reduce outside fn, or use "
                "oracle='finite_difference'."
            )
        flat_args = [
            a.detach().to("cpu", torch.float64).broadcast_to(shape).reshape(-1).tolist()
            for a in problem.arguments
        ]
        v = cotangent.detach().to("cpu").reshape(-1).tolist()
        for spec in problem.specs:
            symbol = symbols[spec.position]
            if symbol not in expression.free_symbols:
                continue
            derivative = _Derivative(sp.diff(expression, symbol), symbols)
            owner = (
                torch.arange(spec.numel)
                .reshape(spec.shape)
                .broadcast_to(shape)
                .reshape(-1)
                .tolist()
            )
            for e, k in enumerate(owner):
                index = spec.offset + k
                if reasons[index] is not None or v[e] == 0:
                    continue  # a zero weight (an output left out) contributes nothing
                point = [args[e] for args in flat_args]
                undefined = derivative.undefined(point)
                if undefined is not None:
                    reasons[index] = undefined
                    continue
                low, high = derivative.stable_interval(point, self.dps)
                if not (_finite_real(low) and _finite_real(high)):
                    where = f"{spec.name}[{', '.join(map(str, spec.unravel(k)))}]"
                    reasons[index] = f"the exact derivative is not a finite real number at {where}"
                    continue
                weight = mpmath.mpf(v[e])
                lo, hi = sorted((weight * low, weight * high))
                lows[index] += lo
                highs[index] += hi


def _finite_real(value: Any) -> bool:
    return (isinstance(value, mpmath.mpf) and mpmath.isfinite(value)) or (
        isinstance(value, (int, float)) and math.isfinite(value)
    )


def _project(
    problem: Problem,
    probes: Probes,
    lows: list[Any],
    highs: list[Any],
    reasons: list[str | None],
) -> Estimate:
    result = Estimate.empty(probes.count)
    for p in range(probes.count):
        if probes.is_basis:
            terms = [(1.0, p)]
        else:
            row = probes.direction(p, problem.size, torch.device("cpu")).tolist()
            terms = [(w, k) for k, w in enumerate(row) if w != 0.0]
        undecided = [reasons[k] for _, k in terms if reasons[k] is not None]
        if undecided:
            result.reasons[p] = undecided[0]
            continue
        low = mpmath.fsum(min(w * lows[k], w * highs[k]) for w, k in terms)
        high = mpmath.fsum(max(w * lows[k], w * highs[k]) for w, k in terms)
        value = float((low + high) / 2)
        result.values[p] = value
        result.errors[p] = EPS64 * abs(value)
        if low != high:
            result.lower[p] = float(low)
            result.upper[p] = float(high)
    return result


def _exact(value: float | str) -> sp.Rational:
    """A number as an exact rational: floats exactly (their binary value), text as written."""
    return sp.Rational(value) if isinstance(value, str) else sp.Rational(float(value))


def exact_value(expr: str, point: dict[str, float | str]) -> float:
    """``expr`` evaluated exactly at ``point`` (SymPy rationals), rounded once to float64.

    A string value is taken as the decimal it spells (``"0.01"`` is exactly 1/100); a float as
    its exact binary value.
    """
    parsed = parse_expression(expr, list(point))
    symbols = real_symbols(list(point))
    exact = parsed.xreplace({symbols[name]: _exact(v) for name, v in point.items()})
    return float(sp.N(exact, 30))


def gradient_descent_trajectory(
    loss: str, wrt: str, *, start: float | str, lr: float | str, steps: int
) -> tuple[list[float], list[float], str]:
    """Exact gradient descent on a loss whose gradient is affine in ``wrt``.

    Differentiates ``loss`` with SymPy, iterates ``w <- w - lr * dloss/dw`` ``steps`` times in
    exact rational arithmetic and returns the weights after each step, the loss before each step
    (each rounded once to float64) and the closed form ``w_n`` as text. Refuses a loss whose
    gradient is not affine in ``wrt`` (no closed form).
    """
    w = real_symbols([wrt])[wrt]
    parsed = parse_expression(loss, [wrt])
    gradient = sp.expand(sp.diff(parsed, w))
    if sp.degree(gradient, w) > 1:
        raise InvalidArgument(
            f"Got loss={loss!r}, whose gradient {gradient} is not affine in {wrt}: the update "
            "has no closed form. Use a quadratic loss."
        )
    rate = _exact(lr)
    update = sp.expand(w - rate * gradient)
    slope, offset = update.coeff(w, 1), update.coeff(w, 0)
    n = sp.Symbol("n", integer=True, nonnegative=True)
    fixed = offset / (1 - slope)
    closed = sp.simplify(fixed + (_exact(start) - fixed) * slope**n)
    weights, losses, current = [], [], _exact(start)
    for _ in range(steps):
        losses.append(float(parsed.xreplace({w: current})))
        current = update.xreplace({w: current})
        weights.append(float(current))
    return weights, losses, f"{wrt}_n = {closed}"
