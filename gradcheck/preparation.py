"""The set-up every element-wise gradient check shares: validated arguments, autograd's
``v^T J`` in the inputs' dtype, and the oracle's float64 :class:`~gradcheck.oracles.Problem`
with its probes.

check_function judges autograd against the oracle on this set-up; oracle_gradient returns the
oracle's side alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from gradcheck import arguments as args
from gradcheck import validation
from gradcheck.errors import InvalidArgument
from gradcheck.oracles import Oracle, Probes, Problem, resolve_oracle
from gradcheck.oracles.base import EPS64, InputSpec, frozen_rng
from gradcheck.tolerances import AUTOGRAD_ROUNDING_FACTOR


@dataclass(frozen=True)
class Prepared:
    """A check ready to judge: the oracle, the function's label, autograd's flat float64
    gradient (computed in ``dtype`` on ``device``), and the oracle's problem and probes."""

    oracle: Oracle
    label: str
    dtype: torch.dtype
    device: torch.device
    positions: list[int]
    gradient: torch.Tensor
    problem: Problem
    probes: Probes


def prepare(
    fn: Callable[..., Any],
    inputs: args.Inputs,
    oracle: str | Oracle,
    expr: Any,
    seed: int,
    name: str | None,
    cotangents: args.Cotangents,
    *,
    basis: bool = False,
) -> Prepared:
    """Validate the arguments, run autograd once and build the oracle's problem (probes along
    every element with ``basis``, else as the oracle prefers for the input's size)."""
    judge_oracle = resolve_oracle(oracle, expr)
    validation.callable_fn(fn)
    validation.seed(seed)
    validation.optional_name(name)
    arguments = validation.tensor_tuple(inputs)
    positions = args.differentiable_positions(arguments)
    dtype = args.least_precise(arguments[i].dtype for i in positions)
    device = arguments[positions[0]].device
    names = judge_oracle.input_names(args.argument_names(fn, len(arguments)))

    with torch.inference_mode(False), torch.enable_grad():
        gradient, used = autograd_gradient(fn, arguments, positions, seed, device, cotangents)

    specs, offset = [], 0
    for i in positions:
        specs.append(InputSpec(names[i], i, tuple(arguments[i].shape), offset))
        offset += specs[-1].numel
    problem = Problem(
        fn=fn,
        arguments=tuple(
            a.detach().to(torch.float64, copy=True) if a.is_floating_point() else a.detach().clone()
            for a in arguments
        ),
        names=names,
        specs=tuple(specs),
        cotangents=used,
        seed=seed,
    )
    probes = (
        Probes(count=problem.size) if basis else choose_probes(judge_oracle, problem.size, seed)
    )
    return Prepared(
        oracle=judge_oracle,
        label=name or args.function_name(fn),
        dtype=dtype,
        device=device,
        positions=positions,
        gradient=gradient,
        problem=problem,
        probes=probes,
    )


def autograd_gradient(
    fn: Callable[..., Any],
    arguments: tuple[torch.Tensor, ...],
    positions: list[int],
    seed: int,
    device: torch.device,
    given: args.Cotangents = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor | None, ...]]:
    """``v^T J`` by reverse mode in the inputs' dtype (flat float64 on CPU) and the cotangents."""
    copies = [a.detach().clone() for a in arguments]
    for i in positions:
        copies[i].requires_grad_(True)
    with frozen_rng(seed, device):
        outputs = args.output_tuple(fn(*copies), args.function_name(fn))
    chosen = args.given_cotangents(given, outputs)
    generator = torch.Generator().manual_seed(seed)
    cotangents: list[torch.Tensor | None] = []
    tracked, grad_outputs = [], []
    for j, out in enumerate(outputs):
        if not out.is_floating_point():
            cotangents.append(None)
            continue
        if chosen is not None:
            v = chosen[j].detach().to("cpu", torch.float64)
        else:
            v = args.default_cotangent(out.shape, generator)
        v_in_dtype = v.to(out.dtype)
        cotangents.append(v_in_dtype.to(device=out.device, dtype=torch.float64))
        if out.requires_grad:
            tracked.append(out)
            grad_outputs.append(v_in_dtype.to(out.device))
    if all(v is None for v in cotangents):
        raise InvalidArgument(
            "Got only integer or boolean outputs from fn; there is nothing to differentiate. "
            "Return the floating-point result."
        )
    if not tracked:
        raise InvalidArgument(
            "Got an output that does not depend on any differentiable input (no output requires "
            "grad). Check that fn uses its inputs through torch operations, without .detach(), "
            ".item(), numpy or torch.no_grad()."
        )
    differentiable = [copies[i] for i in positions]
    grads = torch.autograd.grad(tracked, differentiable, grad_outputs, allow_unused=True)
    flat = [
        (torch.zeros_like(x) if g is None else g).detach().to("cpu", torch.float64).reshape(-1)
        for x, g in zip(differentiable, grads)
    ]
    return torch.cat(flat), tuple(cotangents)


def choose_probes(oracle: Oracle, size: int, seed: int) -> Probes:
    """Every element for small inputs (or an oracle that wants them), else the oracle's number
    of seeded random directions (``seed + 1``), each scaled to max-norm 1."""
    if oracle.prefers_basis or size <= oracle.full_max:
        return Probes(count=size)
    generator = torch.Generator().manual_seed(seed + 1)
    directions = torch.randn(oracle.directions, size, generator=generator, dtype=torch.float64)
    directions /= directions.abs().amax(dim=1, keepdim=True)
    return Probes(count=oracle.directions, directions=directions)


def project(gradient: torch.Tensor, probes: Probes) -> tuple[list[float], list[float]]:
    """Autograd's derivative along every probe, and the rounding of that contraction."""
    if probes.directions is None:
        return gradient.tolist(), [0.0] * probes.count
    terms = probes.directions * gradient
    rounding = AUTOGRAD_ROUNDING_FACTOR * EPS64 * terms.abs().sum(dim=1)
    return terms.sum(dim=1).tolist(), rounding.tolist()
