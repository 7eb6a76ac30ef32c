"""The functions higher-order checks differentiate: autograd's gradient as a function of the
inputs.

``gradient_function(fn, arguments, positions, seed)`` is ``g(*arguments)``, the tuple of
autograd's ``v^T J`` with respect to each differentiable input, computed with
``create_graph=True`` whenever an input requires grad, so that autograd can differentiate it
once more (double backward: what ``torch.autograd.gradgradcheck`` checks). ``v`` is fixed when
``g`` is built (seeded, or the caller's cotangents), so ``g`` is a function of its inputs and
every oracle can evaluate it; the check of ``g`` contracts its outputs with a cotangent ``u``
of its own, so it judges the Hessian-vector products ``u^T H v``.

A gradient that does not require grad although an input does is autograd claiming that the
second derivative is zero: a backward that uses ``.detach()`` or ``.data`` on what it saved, or
returns a constant. ``g`` returns it connected to the inputs with a zero derivative (so the
claim is judged, not left out), and records it, so a failure can name the cause.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from gradcheck import arguments as args
from gradcheck.errors import InvalidArgument
from gradcheck.oracles.symbolic import Symbolic


class _ZeroDerivative(torch.autograd.Function):
    """``value`` itself, as a function of ``inputs`` whose derivative is zero."""

    @staticmethod
    def forward(ctx: Any, value: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        ctx.zero = torch.zeros_like(value)
        return value.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, ...]:
        return (None,) * len(ctx.needs_input_grad)

    @staticmethod
    def jvp(ctx: Any, *tangents: torch.Tensor | None) -> torch.Tensor:
        return ctx.zero


@dataclass
class GradientFunction:
    """``g`` and what its evaluations at the checked point observed."""

    fn: Callable[..., Any]
    names: tuple[str, ...]
    cotangents: tuple[torch.Tensor | None, ...] = ()
    """The fixed float64 ``v`` of each output (None: not differentiated)."""
    used: tuple[int, ...] = ()
    """The outputs contracted into ``g`` (floating point, differentiated, not left out)."""
    detached: set[str] = field(default_factory=set)
    """The inputs whose gradient did not require grad while the inputs did."""

    def hint(self) -> str:
        """Why autograd's derivative of the gradient may be zero, or "" when nothing was seen."""
        if not self.detached:
            return ""
        names = ", ".join(sorted(self.detached))
        return (
            f"  hint: autograd's gradient with respect to {names} does not require grad, so its "
            "derivative counts as zero: the backward detaches what it saved (.detach(), .data, "
            "a tensor rebuilt from numbers) or returns a gradient that does not depend on the "
            "inputs"
        )


def gradient_function(
    fn: Callable[..., Any],
    arguments: tuple[torch.Tensor, ...],
    positions: Sequence[int],
    names: Sequence[str],
    seed: int,
    cotangents: args.Cotangents = None,
) -> GradientFunction:
    """``g(*arguments) = v^T J`` for each differentiable input (``positions``), as a tuple."""
    for i in positions:
        if arguments[i].layout != torch.strided:
            raise InvalidArgument(
                f"Got a sparse inputs[{i}] with order > 1; higher derivatives are checked on "
                f"dense inputs. Pass inputs[{i}].to_dense()."
            )
    label = args.function_name(fn)
    with torch.enable_grad():
        probe = [
            a.detach().requires_grad_(True) if i in positions else a
            for i, a in enumerate(arguments)
        ]
        outputs = args.output_tuple(fn(*probe), label)
    fixed = _fixed_cotangents(outputs, cotangents, seed)
    shown = tuple(f"d/d{names[i]}" for i in positions)
    used = tuple(j for j, o in enumerate(outputs) if fixed[j] is not None and o.requires_grad)
    result = GradientFunction(fn=fn, names=shown, cotangents=tuple(fixed), used=used)

    @functools.wraps(fn)
    def gradient(*values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # Arguments beyond fn's are the cotangents handed to an exact oracle: g keeps its own.
        values = values[: len(arguments)]
        tracked = any(values[i].requires_grad for i in positions)
        if not tracked and functional["usable"]:
            try:
                return _functional_gradient(fn, values, positions, fixed, used, label)
            except Exception:  # no torch.func support (an old-style Function, .item())
                functional["usable"] = False
        with torch.enable_grad():
            inputs = list(values)
            for i in positions:
                if not inputs[i].requires_grad:
                    inputs[i] = inputs[i].detach().requires_grad_(True)
            outs = args.output_tuple(fn(*inputs), label)
            scalar = _contraction(outs, fixed)
            wrt = [inputs[i] for i in positions]
            if scalar is None or not scalar.requires_grad:
                grads: Sequence[torch.Tensor | None] = [None] * len(wrt)
            else:
                grads = torch.autograd.grad(scalar, wrt, create_graph=tracked, allow_unused=True)
        return tuple(
            _connected(grad, x, tracked, result, names[i])
            for grad, x, i in zip(grads, wrt, positions)
        )

    functional = {"usable": True}
    """Whether g may run through torch.func.grad when nothing requires grad (what lets the
    finite-difference oracle evaluate every probe of a step in one vmapped call); turned off
    for good at the first refusal."""
    result.fn = gradient
    return result


def _functional_gradient(
    fn: Callable[..., Any],
    values: Sequence[torch.Tensor],
    positions: Sequence[int],
    fixed: list[torch.Tensor | None],
    used: tuple[int, ...],
    label: str,
) -> tuple[torch.Tensor, ...]:
    """``v^T J`` through :func:`torch.func.grad`, which composes with ``vmap`` (autograd.grad
    does not); the same formulas as the autograd path, with no graph kept."""

    def scalar(*wrt: torch.Tensor) -> torch.Tensor:
        inputs = list(values)
        for i, x in zip(positions, wrt):
            inputs[i] = x
        outs = args.output_tuple(fn(*inputs), label)
        total = _contraction(outs, fixed, used)
        if total is None:
            raise ValueError("no differentiated output")
        return total

    grads = torch.func.grad(scalar, argnums=tuple(range(len(positions))))(
        *(values[i] for i in positions)
    )
    return tuple(g.detach() for g in grads)


def _connected(
    grad: torch.Tensor | None,
    x: torch.Tensor,
    tracked: bool,
    record: GradientFunction,
    name: str,
) -> torch.Tensor:
    value = torch.zeros_like(x) if grad is None else grad
    if not tracked:
        return value.detach()
    if value.requires_grad:
        return value
    if grad is not None:
        record.detached.add(name)
    return _ZeroDerivative.apply(value.detach(), x)


def _fixed_cotangents(
    outputs: tuple[torch.Tensor, ...], given: args.Cotangents, seed: int
) -> list[torch.Tensor | None]:
    """One float64 cotangent per output as ``view_as_real`` of it (None: not differentiated),
    zero where the output is NaN/Inf at the point."""
    real = tuple(torch.view_as_real(o.resolve_conj()) if o.is_complex() else o for o in outputs)
    chosen = args.given_cotangents(given, real)
    generator = torch.Generator().manual_seed(seed)
    fixed: list[torch.Tensor | None] = []
    for j, out in enumerate(real):
        if not out.is_floating_point():
            fixed.append(None)
            continue
        if chosen is not None:
            v = chosen[j]
            v = None if v is None else v.detach().to("cpu", torch.float64)
        else:
            v = args.default_cotangent(out.shape, generator)
        if v is not None:
            v = torch.where(torch.isfinite(out.detach()).cpu(), v, 0.0)
        fixed.append(v)
    return fixed


def _contraction(
    outputs: tuple[torch.Tensor, ...],
    fixed: list[torch.Tensor | None],
    used: tuple[int, ...] | None = None,
) -> torch.Tensor | None:
    """``sum_j <v_j, out_j>`` over the differentiable outputs (the real inner product of a
    complex output's parts): those in ``used``, or else those that require grad; None when no
    output is differentiated."""
    total = None
    for j, (out, v) in enumerate(zip(outputs, fixed)):
        differentiated = out.requires_grad if used is None else j in used
        if v is None or not differentiated:
            continue
        real = torch.view_as_real(out.resolve_conj()) if out.is_complex() else out
        weights = v.to(device=real.device, dtype=real.dtype)
        term = torch.where(weights != 0, real * weights, 0.0).sum()
        total = term if total is None else total + term
    return total


def gradient_oracle(
    oracle: Symbolic,
    gradient: GradientFunction,
    arguments: tuple[torch.Tensor, ...],
    positions: Sequence[int],
    names: Sequence[str],
) -> tuple[Symbolic, tuple[torch.Tensor, ...]]:
    """The exact oracle of ``g`` and the cotangent tensors ``g`` takes as extra arguments:
    ``d g_i = sum_j v_j * d expr_j / d x_i`` differentiated once more by SymPy, with each ``v_j``
    a symbol whose values are the fixed cotangent. Elementwise only: every differentiable
    input must have the shape of every output the expression describes."""
    shapes = {tuple(arguments[i].shape) for i in positions}
    cotangents = [gradient.cotangents[j] for j in gradient.used]
    shapes |= {tuple(v.shape) for v in cotangents if v is not None}
    if len(shapes) != 1 or any(arguments[i].is_complex() for i in positions):
        raise InvalidArgument(
            "Got oracle='sympy' with order > 1, whose exact second derivative is elementwise: "
            "every differentiable input must be real and have the shape of every output "
            f"(got shapes {sorted(shapes)}). Use oracle='finite_difference' for broadcasting "
            "or reducing functions."
        )
    v_names = _fresh_names(len(cotangents), names)
    exact = oracle.of_gradient(names, [names[i] for i in positions], v_names)
    values = tuple(v.detach().clone() for v in cotangents if v is not None)
    return exact, values


def _fresh_names(count: int, taken: Sequence[str]) -> tuple[str, ...]:
    """``count`` identifiers for the cotangents, none of them an input's name."""
    stem = "cotangent"
    while any(name.startswith(stem) for name in taken):
        stem = "_" + stem
    return tuple(f"{stem}{j}" for j in range(count))
