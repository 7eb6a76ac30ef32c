"""How a check reads the caller's function and tensors: names, the differentiable inputs, the
outputs, and the seeded cotangents ``v`` of ``v^T J``.

Shared by check_function, oracle_gradient and the semantics checks, so each takes the same
inputs the same way.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from gradcheck import validation
from gradcheck.errors import InvalidArgument

Inputs = torch.Tensor | Sequence[torch.Tensor]
Cotangents = torch.Tensor | Sequence[torch.Tensor | None] | None

LEFT_OUT_BY_CALLER = (
    "has cotangents[{j}]=None: left out of v^T J as asked (autograd and the oracle both skip it)"
)


def function_name(fn: Callable[..., Any]) -> str:
    """A readable name for ``fn``: ``torch.sin``, ``MySquare.apply``, a local function's name."""
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type):
        return f"{owner.__name__}.{getattr(fn, '__name__', 'apply')}"
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if qualname and qualname.startswith("_VariableFunctions"):
        return f"torch.{fn.__name__}"  # torch.sin and the other C builtins
    if qualname and "<locals>" in qualname:
        return qualname.rsplit(".", 1)[-1]
    return qualname or type(fn).__name__


def argument_names(fn: Callable[..., Any], count: int) -> tuple[str, ...]:
    """Names of ``fn``'s first ``count`` positional parameters, or x / x0, x1, ... if unknown."""
    target = fn
    owner = getattr(fn, "__self__", None)
    skip = 0
    if isinstance(owner, type) and issubclass(owner, torch.autograd.Function):
        target, skip = owner.forward, 1  # Function.apply(*args) -> forward(ctx, *args)
    try:
        parameters = list(inspect.signature(target).parameters.values())[skip:]
    except (TypeError, ValueError):
        parameters = []
    positional = [
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) >= count and len(set(positional[:count])) == count:
        return tuple(positional[:count])
    return ("x",) if count == 1 else tuple(f"x{i}" for i in range(count))


def one_inputs_argument(check: str, fn: Callable[..., Any], more: tuple[object, ...]) -> None:
    """Refuse tensors passed as several positional arguments (``check(fn, x, w, b)``): the
    inputs are one argument, a tuple, and Python's "takes 2 positional arguments" does not say
    so."""
    if not more:
        return
    names = ", ".join(argument_names(fn, 1 + len(more)))
    raise InvalidArgument(
        f"Got {1 + len(more)} positional inputs after fn, but {check} takes its inputs as one "
        f"argument: pass them as a tuple, {check}(fn, ({names})), in fn's argument order."
    )


def differentiable_positions(arguments: tuple[torch.Tensor, ...]) -> list[int]:
    """The inputs to differentiate: those with ``requires_grad``, or else every floating-point
    one. An empty one has nothing to check and a NaN/Inf element has no derivative; the check
    reports both rather than refusing the input."""
    positions = [i for i, a in enumerate(arguments) if a.requires_grad]
    if not positions:
        positions = [i for i, a in enumerate(arguments) if a.is_floating_point() or a.is_complex()]
    if not positions:
        kinds = ", ".join(f"inputs[{i}] is {a.dtype}" for i, a in enumerate(arguments))
        raise InvalidArgument(
            f"Got no floating-point input to differentiate ({kinds}). Gradients exist only for "
            "floating-point tensors: convert with x.double() (float64 is the dtype of truth)."
        )
    return positions


def require_checkable(arguments: tuple[torch.Tensor, ...], positions: list[int]) -> None:
    """Refuse an empty or non-finite differentiable input, for checks that compare whole
    gradients (the semantics checks) rather than judging element by element."""
    for i in positions:
        tensor = arguments[i]
        if tensor.numel() == 0:
            raise InvalidArgument(
                f"Got inputs[{i}] with shape {tuple(tensor.shape)}, which has no elements: "
                "there is no gradient to check. Pass a non-empty tensor."
            )
        validation.finite_tensor(tensor, f"inputs[{i}]")


def least_precise(dtypes: Iterable[torch.dtype]) -> torch.dtype:
    """The dtype with the largest machine epsilon."""
    return max(dtypes, key=lambda d: torch.finfo(d).eps)


def output_tuple(out: object, label: str) -> tuple[torch.Tensor, ...]:
    """``fn``'s output as a tuple of tensors, or an error that says what to return."""
    items = out if isinstance(out, (tuple, list)) else (out,)
    if not items:
        raise InvalidArgument(
            f"Got an empty {type(out).__name__} from {label!r}, but fn must return a tensor or "
            "a tuple of tensors."
        )
    for j, item in enumerate(items):
        if not isinstance(item, torch.Tensor):
            where = "fn's output" if len(items) == 1 else f"fn's output[{j}]"
            raise InvalidArgument(
                f"Got {where} of type {type(item).__name__} from {label!r}, but fn must return "
                "a tensor or a tuple of tensors. Return the tensor itself (not .item() or "
                ".tolist()), or check a lambda that picks the tensor outputs."
            )
    return tuple(items)


def real_outputs(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with every complex output replaced by ``torch.view_as_real(output)``: its real and
    imaginary parts as a real tensor, which autograd and every oracle differentiate alike."""

    @functools.wraps(fn)
    def with_real_outputs(*arguments: torch.Tensor) -> Any:
        out = fn(*arguments)
        items = out if isinstance(out, (tuple, list)) else (out,)
        real = tuple(
            torch.view_as_real(o.resolve_conj())
            if isinstance(o, torch.Tensor) and o.is_complex()
            else o
            for o in items
        )
        return real if isinstance(out, (tuple, list)) else real[0]

    return with_real_outputs


def default_cotangent(shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """The ``v`` a check uses when the caller gives none, in float64: 1 for a one-element
    output, seeded N(0, 1) values otherwise (so every output element matters)."""
    if shape.numel() == 1:
        return torch.ones(shape, dtype=torch.float64)
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def given_cotangents(
    given: Cotangents, outputs: tuple[torch.Tensor, ...]
) -> list[torch.Tensor | None] | None:
    """The caller's cotangents, one per output, checked against the outputs' shapes; None for
    an output the caller leaves out (or a non-floating one)."""
    if given is None:
        return None
    if not isinstance(given, (torch.Tensor, tuple, list)):
        raise InvalidArgument(
            f"Got cotangents of type {type(given).__name__}, but cotangents must be a tensor "
            "shaped like fn's output, or a tuple with one tensor per output."
        )
    items = [given] if isinstance(given, torch.Tensor) else list(given)
    if len(items) != len(outputs):
        raise InvalidArgument(
            f"Got {len(items)} cotangent(s) for {len(outputs)} output(s). Pass one tensor per "
            "output (None for an output to leave out, or an integer or boolean one)."
        )
    if all(v is None for v, out in zip(items, outputs) if out.is_floating_point()):
        raise InvalidArgument(
            f"Got cotangents={tuple(items)!r}, which leaves out every output: there is nothing "
            "to judge. Pass a tensor for at least one floating-point output."
        )
    chosen: list[torch.Tensor | None] = []
    for j, (v, out) in enumerate(zip(items, outputs)):
        if not out.is_floating_point():
            chosen.append(torch.empty(0))
            continue
        if v is None:
            chosen.append(None)
            continue
        if not isinstance(v, torch.Tensor):
            raise InvalidArgument(
                f"Got cotangents[{j}] of type {type(v).__name__}, but it must be a tensor of "
                f"shape {tuple(out.shape)}. Wrap it: torch.tensor(..., dtype=torch.float64)."
            )
        if v.is_complex():
            v = torch.view_as_real(v.detach().resolve_conj())
        if tuple(v.shape) != tuple(out.shape):
            raise InvalidArgument(
                f"Got cotangents[{j}] of shape {tuple(v.shape)}, but output {j} has shape "
                f"{tuple(out.shape)}; v in v^T J must have the output's shape."
            )
        if not v.is_floating_point() or not bool(torch.isfinite(v).all()):
            raise InvalidArgument(
                f"Got cotangents[{j}] of dtype {v.dtype} with values "
                f"{validation.short_repr(v)}; it must hold finite floating-point values."
            )
        chosen.append(v)
    return chosen
