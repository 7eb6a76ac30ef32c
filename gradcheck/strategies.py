"""Hypothesis strategies for gradient properties (the only module that imports hypothesis).

- :func:`shapes` and :func:`tensors`: float64 (or float32) tensors with finite values, built on
  ``hypothesis.extra.numpy``, optionally kept ``margin`` away from given kink points.
- :func:`expressions`: random expression trees over one to three symbols, built once into both a
  SymPy expression and the equivalent torch function, so the same tree feeds autograd and the
  oracles. Domains are kept valid by construction (``log``/``sqrt``/real powers act on
  ``u**2 + c`` with ``c >= 1/2``, denominators are ``u**2 + c``) and magnitudes are bounded
  (a subtree that could exceed ``1e4`` is wrapped in ``tanh``), so no example is rejected.
- :func:`sgd_hyperparameters`, :func:`adam_hyperparameters`: valid optimiser settings.
- :func:`register_profiles`: the ``dev``, ``ci`` and ``thorough`` profiles.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import sympy as sp
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from gradcheck.environment_flags import running_in_ci
from gradcheck.errors import InvalidArgument

TorchFn = Callable[..., torch.Tensor]

# -- profiles ----------------------------------------------------------------------------------

HYPOTHESIS_PROFILES: dict[str, dict[str, Any]] = {
    # Derandomized too: plain `pytest` (the README's command) must give the same verdict on
    # every machine; random exploration is what `thorough` is for.
    "dev": {"max_examples": 15, "derandomize": True, "deadline": None},
    "ci": {
        "max_examples": 40,
        "derandomize": True,
        "deadline": None,
        "print_blob": True,
        "suppress_health_check": [HealthCheck.too_slow],
    },
    "thorough": {
        "max_examples": 400,
        "deadline": None,
        "print_blob": True,
        "suppress_health_check": [HealthCheck.too_slow],
    },
}
"""``dev``: fast, derandomized local runs (the default); ``ci``: derandomized, more examples,
the default under ``CI=true``; ``thorough``: ten times the examples, randomized, for nightly
or manual runs."""


def register_profiles() -> str:
    """Register :data:`HYPOTHESIS_PROFILES` with Hypothesis and load the default one.

    The default is ``$HYPOTHESIS_PROFILE`` if set, else ``ci`` under ``CI=true``, else ``dev``;
    pytest's ``--hypothesis-profile NAME`` overrides it. Returns the loaded name.
    """
    for name, options in HYPOTHESIS_PROFILES.items():
        settings.register_profile(name, **options)
    default = "ci" if running_in_ci() else "dev"
    name = os.environ.get("HYPOTHESIS_PROFILE", default)
    if name not in HYPOTHESIS_PROFILES:
        raise InvalidArgument(
            f"Got HYPOTHESIS_PROFILE={name!r}, but the profiles are {sorted(HYPOTHESIS_PROFILES)}."
        )
    settings.load_profile(name)
    return name


# -- tensors -----------------------------------------------------------------------------------


def _check_bounds(min_value: float, max_value: float) -> None:
    for label, value in (("min_value", min_value), ("max_value", max_value)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidArgument(f"Got {label}={value!r}, but {label} must be a number.")
        if not math.isfinite(value):
            raise InvalidArgument(f"Got {label}={value!r}, but {label} must be finite.")
    if min_value > max_value:
        raise InvalidArgument(f"Got min_value={min_value!r} > max_value={max_value!r}; swap them.")


def shapes(
    *, min_dims: int = 1, max_dims: int = 2, min_side: int = 1, max_side: int = 4
) -> st.SearchStrategy[tuple[int, ...]]:
    """Array shapes, as :func:`hypothesis.extra.numpy.array_shapes` draws them."""
    if min_dims < 0 or max_dims < min_dims:
        raise InvalidArgument(
            f"Got min_dims={min_dims!r}, max_dims={max_dims!r}, but they need "
            "0 <= min_dims <= max_dims."
        )
    if min_side < 1 or max_side < min_side:
        raise InvalidArgument(
            f"Got min_side={min_side!r}, max_side={max_side!r}, but they need "
            "1 <= min_side <= max_side (gradients of empty tensors are meaningless)."
        )
    return hnp.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    )


def _away(value: float, kinks: Sequence[float], margin: float) -> float:
    """``value`` moved (if needed) to at least ``margin`` from every kink point."""
    for _ in range(len(kinks) + 1):
        close = [k for k in kinks if abs(value - k) < margin]
        if not close:
            return value
        kink = close[0]
        value = kink + margin if value >= kink else kink - margin
    return value


def tensors(
    *,
    dtype: torch.dtype = torch.float64,
    shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]] | None = None,
    min_value: float = -3.0,
    max_value: float = 3.0,
    away_from: Sequence[float] = (),
    margin: float = 1e-2,
) -> st.SearchStrategy[torch.Tensor]:
    """Tensors of ``dtype`` (float64 or float32) with finite values in [``min_value``,
    ``max_value``], of ``shape`` (a tuple or a strategy; default :func:`shapes`), each value at
    least ``margin`` away from every point in ``away_from`` (values are moved, not rejected)."""
    _check_bounds(min_value, max_value)
    if dtype not in (torch.float64, torch.float32):
        raise InvalidArgument(f"Got dtype={dtype}, but tensors() draws float64 or float32.")
    if margin < 0 or not math.isfinite(margin):
        raise InvalidArgument(f"Got margin={margin!r}, but margin must be finite and >= 0.")
    numpy_dtype = np.float64 if dtype == torch.float64 else np.float32
    elements = st.floats(
        min_value,
        max_value,
        allow_nan=False,
        allow_infinity=False,
        width=64 if dtype == torch.float64 else 32,
    )
    arrays = hnp.arrays(numpy_dtype, shapes() if shape is None else shape, elements=elements)
    kinks = tuple(float(k) for k in away_from)

    def to_tensor(array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.array(array, copy=True)).to(dtype)
        if kinks and margin > 0:
            moved = [_away(v, kinks, margin) for v in tensor.reshape(-1).tolist()]
            tensor = torch.tensor(moved, dtype=dtype).reshape(tensor.shape)
        return tensor

    return arrays.map(to_tensor)


# -- expressions -------------------------------------------------------------------------------

_BOUND_LIMIT = 1e4


@dataclass(frozen=True)
class _Node:
    """One subtree: its SymPy form, its torch form and a bound on its magnitude."""

    expr: sp.Expr
    torch_fn: TorchFn
    bound: float


def _sigmoid_torch(u: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(u)


DEFAULT_TORCH_OPS: dict[str, TorchFn] = {
    "exp": torch.exp,
    "log": torch.log,
    "sin": torch.sin,
    "cos": torch.cos,
    "tanh": torch.tanh,
    "sigmoid": _sigmoid_torch,
    "sqrt": torch.sqrt,
    "abs": torch.abs,
    "relu": torch.relu,
}
"""The torch implementation of each unary operation of the grammar; replace one (for example
with a ``torch.autograd.Function`` with a wrong backward) to plant a bug."""

UNARY = ("exp", "log", "sin", "cos", "tanh", "sigmoid", "sqrt", "abs", "relu")
BINARY = ("add", "sub", "mul", "div")


class Expression:
    """A generated expression: SymPy text for the oracle and the torch function for autograd.

    ``elementwise(*tensors)`` evaluates it elementwise (broadcasting the inputs); calling the
    expression applies ``reduction`` (None, ``"sum"`` or ``"mean"``) on top. For the SymPy
    oracle, which is elementwise, a reduction is the cotangent :meth:`reduction_cotangent`.
    """

    def __init__(
        self,
        expr: sp.Expr,
        symbols: tuple[str, ...],
        elementwise: TorchFn,
        reduction: str | None = None,
        ops: tuple[str, ...] = (),
    ) -> None:
        self.expr = expr
        self.symbols = symbols
        self.elementwise = elementwise
        self.reduction = reduction
        self.ops = ops

    @property
    def text(self) -> str:
        """The SymPy expression as text (what ``check_function(expr=...)`` takes)."""
        return str(self.expr)

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        out = self.elementwise(*tensors)
        if self.reduction == "sum":
            return out.sum()
        if self.reduction == "mean":
            return out.mean()
        return out

    def reduction_cotangent(self, *tensors: torch.Tensor) -> torch.Tensor | None:
        """The cotangent that turns the elementwise output into the reduction (None without)."""
        if self.reduction is None:
            return None
        shape = torch.broadcast_shapes(*(t.shape for t in tensors))
        count = math.prod(shape)
        scale = 1.0 if self.reduction == "sum" else 1.0 / count
        return torch.full(shape, scale, dtype=torch.float64)

    def __repr__(self) -> str:
        reduced = f"{self.reduction}(...) of " if self.reduction else ""
        return f"Expression({reduced}{self.text!r} over {self.symbols})"


def _positive(node: _Node, c: float) -> _Node:
    """``u**2 + c``: a positive argument for log, sqrt, real powers and denominators."""
    fn = node.torch_fn
    return _Node(node.expr**2 + c, lambda *t: fn(*t) ** 2 + c, node.bound**2 + c)


def _bounded(node: _Node) -> _Node:
    """``tanh(u)`` if ``u`` could grow past the limit (so nothing overflows)."""
    if node.bound <= _BOUND_LIMIT:
        return node
    fn = node.torch_fn
    return _Node(sp.tanh(node.expr), lambda *t: torch.tanh(fn(*t)), 1.0)


def _unary(name: str, child: _Node, c: float, ops: Mapping[str, TorchFn]) -> _Node:
    op = ops[name]
    fn = child.torch_fn
    if name in ("log", "sqrt"):
        inner = _positive(child, c)
        inner_fn = inner.torch_fn
        sym = sp.log(inner.expr) if name == "log" else sp.sqrt(inner.expr)
        bound = abs(math.log(c)) + math.log(inner.bound) if name == "log" else inner.bound**0.5
        return _Node(sym, lambda *t: op(inner_fn(*t)), bound)
    if name == "exp":
        child = _bounded(_Node(child.expr, fn, child.bound)) if child.bound > 8 else child
        fn = child.torch_fn
        return _Node(sp.exp(child.expr), lambda *t: op(fn(*t)), math.exp(min(child.bound, 8)))
    table: dict[str, tuple[Callable[[sp.Expr], sp.Expr], float]] = {
        "sin": (sp.sin, 1.0),
        "cos": (sp.cos, 1.0),
        "tanh": (sp.tanh, 1.0),
        "sigmoid": (lambda u: 1 / (1 + sp.exp(-u)), 1.0),
        "abs": (sp.Abs, child.bound),
        "relu": (lambda u: sp.Max(0, u), child.bound),
    }
    build, bound = table[name]
    return _Node(build(child.expr), lambda *t: op(fn(*t)), bound)


def _binary(name: str, left: _Node, right: _Node, c: float) -> _Node:
    lf, rf = left.torch_fn, right.torch_fn
    if name == "add":
        return _Node(left.expr + right.expr, lambda *t: lf(*t) + rf(*t), left.bound + right.bound)
    if name == "sub":
        return _Node(left.expr - right.expr, lambda *t: lf(*t) - rf(*t), left.bound + right.bound)
    if name == "mul":
        return _bounded(
            _Node(left.expr * right.expr, lambda *t: lf(*t) * rf(*t), left.bound * right.bound)
        )
    den = _positive(right, c)
    df = den.torch_fn
    return _Node(left.expr / den.expr, lambda *t: lf(*t) / df(*t), left.bound / c)


def _power(child: _Node, exponent: float | int, c: float) -> _Node:
    if isinstance(exponent, int):
        fn = child.torch_fn
        return _bounded(
            _Node(child.expr**exponent, lambda *t: fn(*t) ** exponent, child.bound**exponent)
        )
    base = _positive(child, c)
    bf = base.torch_fn
    rational = sp.Rational(exponent).limit_denominator(8)
    value = float(rational)
    return _bounded(_Node(base.expr**rational, lambda *t: bf(*t) ** value, base.bound**value))


@st.composite
def _nodes(
    draw: st.DrawFn,
    symbols: tuple[sp.Symbol, ...],
    depth: int,
    unary: tuple[str, ...],
    ops: Mapping[str, TorchFn],
    bound: float,
) -> _Node:
    kinds = ["leaf"] if depth == 0 else ["leaf", "unary", "unary", "binary", "power"]
    kind = draw(st.sampled_from(kinds))
    if kind == "leaf":
        index = draw(st.integers(0, len(symbols) - 1))
        scale = draw(st.sampled_from((1, 1, 2, -1, sp.Rational(1, 2), 3)))
        symbol = symbols[index]
        factor = float(scale)
        return _Node(
            scale * symbol,
            lambda *t: t[index] * factor if factor != 1.0 else t[index],
            abs(factor) * bound,
        )
    c = float(draw(st.sampled_from((sp.Rational(1, 2), 1, 2))))
    if kind == "unary":
        name = draw(st.sampled_from(unary))
        child = draw(_nodes(symbols, depth - 1, unary, ops, bound))
        return _unary(name, child, c, ops)
    if kind == "power":
        child = draw(_nodes(symbols, depth - 1, unary, ops, bound))
        exponent = draw(st.sampled_from((2, 3, 0.5, 1.5, 2.5)))
        return _power(child, exponent, c)
    name = draw(st.sampled_from(BINARY))
    left = draw(_nodes(symbols, depth - 1, unary, ops, bound))
    right = draw(_nodes(symbols, depth - 1, unary, ops, bound))
    return _binary(name, left, right, c)


def expressions(
    *,
    min_symbols: int = 1,
    max_symbols: int = 3,
    max_depth: int = 3,
    unary: Sequence[str] = UNARY,
    reductions: Sequence[str | None] = (None, "sum", "mean"),
    torch_ops: Mapping[str, TorchFn] | None = None,
    max_abs_input: float = 3.0,
) -> st.SearchStrategy[Expression]:
    """Random expressions over ``x``, ``y``, ``z`` (``min_symbols`` to ``max_symbols`` of
    them) from the grammar ``+ - * /``, integer and real powers and the ``unary`` functions,
    up to ``max_depth`` levels, with a top-level reduction drawn from ``reductions``.

    ``torch_ops`` replaces the torch implementation of unary operations (see
    :data:`DEFAULT_TORCH_OPS`); ``max_abs_input`` is the input bound the magnitude control
    assumes (draw inputs with ``tensors(min_value=-b, max_value=b)``).
    """
    if not 1 <= min_symbols <= max_symbols <= 3:
        raise InvalidArgument(
            f"Got min_symbols={min_symbols!r}, max_symbols={max_symbols!r}, but they need "
            "1 <= min_symbols <= max_symbols <= 3."
        )
    unknown = [name for name in unary if name not in UNARY]
    if unknown or not unary:
        raise InvalidArgument(f"Got unary={list(unary)!r}, but each must be one of {UNARY}.")
    if max_depth < 1:
        raise InvalidArgument(f"Got max_depth={max_depth!r}, but max_depth must be >= 1.")
    bad = [r for r in reductions if r not in (None, "sum", "mean")]
    if bad or not reductions:
        raise InvalidArgument(
            f"Got reductions={list(reductions)!r}, but each must be None, 'sum' or 'mean'."
        )
    ops = {**DEFAULT_TORCH_OPS, **(torch_ops or {})}
    names = ("x", "y", "z")

    @st.composite
    def build(draw: st.DrawFn) -> Expression:
        count = draw(st.integers(min_symbols, max_symbols))
        symbols = tuple(sp.Symbol(n, real=True) for n in names[:count])
        node = draw(_nodes(symbols, max_depth, tuple(unary), ops, max_abs_input))
        reduction = draw(st.sampled_from(tuple(reductions)))
        used = tuple(
            sorted({type(f).__name__ for f in sp.preorder_traversal(node.expr) if f.is_Function})
        )
        fn = node.torch_fn
        return Expression(
            expr=node.expr,
            symbols=names[:count],
            elementwise=lambda *t: fn(*t) + 0 * sum(t),  # broadcast to every input's shape
            reduction=reduction,
            ops=used,
        )

    return build()


# -- optimisers --------------------------------------------------------------------------------


@st.composite
def sgd_hyperparameters(draw: st.DrawFn) -> dict[str, Any]:
    """Valid ``torch.optim.SGD`` settings: lr, momentum, dampening, nesterov, weight_decay."""
    momentum = draw(st.sampled_from((0.0, 0.5, 0.9)) | st.floats(0.0, 0.99))
    nesterov = momentum > 0 and draw(st.booleans())
    return {
        "lr": draw(st.floats(1e-4, 1.0)),
        "momentum": momentum,
        "dampening": 0.0 if nesterov else draw(st.sampled_from((0.0, 0.1)) | st.floats(0, 1)),
        "nesterov": nesterov,
        "weight_decay": draw(st.sampled_from((0.0, 1e-2)) | st.floats(0.0, 0.1)),
        "maximize": draw(st.booleans()),
    }


@st.composite
def adam_hyperparameters(draw: st.DrawFn) -> dict[str, Any]:
    """Valid ``torch.optim.Adam`` settings: lr, betas, eps, weight_decay, amsgrad."""
    return {
        "lr": draw(st.floats(1e-4, 0.1)),
        "betas": (draw(st.floats(0.0, 0.99)), draw(st.floats(0.5, 0.9999))),
        "eps": draw(st.sampled_from((1e-8, 1e-6)) | st.floats(1e-10, 1e-3)),
        "weight_decay": draw(st.sampled_from((0.0, 1e-2)) | st.floats(0.0, 0.1)),
        "amsgrad": draw(st.booleans()),
        "maximize": draw(st.booleans()),
    }


# -- the catalog's inputs ----------------------------------------------------------------------


def scalars(
    *, min_value: float = -10.0, max_value: float = 10.0, away_from: Sequence[float] = ()
) -> st.SearchStrategy[torch.Tensor]:
    """One-element float64 tensors (a notebook's ``w``, ``b``, ``a``), shape ``(1,)``."""
    return tensors(shape=(1,), min_value=min_value, max_value=max_value, away_from=away_from)
