"""Forward-mode AD as the thing under test (``check_function(..., mode="forward")``).

For every probe ``u`` the tangent ``J u`` is pushed through ``fn`` with
:mod:`torch.autograd.forward_ad` dual tensors in the inputs' own dtype (a custom
``autograd.Function``'s ``jvp`` staticmethod runs, in either style), and contracted with the
check's cotangent: ``<v, J u>`` is then judged against the oracle's derivative of the same
scalar along ``u``, as reverse mode's ``<v^T J, u>`` is. A function with no forward-mode formula
leaves every probe undecided with torch's reason: forward mode could not be judged, which is not
a pass.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.autograd.forward_ad as fwAD

from gradcheck import arguments as args
from gradcheck.oracles.base import EPS64, Probes, Problem, frozen_rng, storage_copy
from gradcheck.tolerances import AUTOGRAD_ROUNDING_FACTOR


def forward_projections(
    fn: Callable[..., Any],
    arguments: tuple[torch.Tensor, ...],
    problem: Problem,
    probes: Probes,
    seed: int,
    floor: float = 0.0,
) -> tuple[list[float], list[float], str | None]:
    """Forward mode's ``<v, J u>`` along every probe (in the inputs' dtype, contracted in
    float64), the rounding of each contraction (plus ``floor`` per element the probe moves),
    and why forward mode is unavailable (None when every probe was pushed through)."""
    values, roundings = [], []
    label = args.function_name(fn)
    for p in range(probes.count):
        direction = probes.direction(p, problem.size, torch.device("cpu"))
        try:
            tangents = _tangents(fn, arguments, problem, direction, seed, label)
        except (RuntimeError, NotImplementedError) as error:
            text = str(error).strip()
            reason = text.splitlines()[0][:200] if text else type(error).__name__
            return [], [], f"forward-mode AD is not available for fn here: {reason}"
        value = torch.zeros((), dtype=torch.float64)
        magnitude = torch.zeros((), dtype=torch.float64)
        for cotangent, tangent in zip(problem.used_cotangents, tangents):
            if tangent is None:
                continue
            terms = torch.where(cotangent.cpu() != 0, cotangent.cpu() * tangent, 0.0)
            value += terms.sum()
            magnitude += terms.abs().sum()
        values.append(float(value))
        moved = float(direction.abs().sum())
        roundings.append(AUTOGRAD_ROUNDING_FACTOR * EPS64 * float(magnitude) + floor * moved)
    return values, roundings, None


def _tangents(
    fn: Callable[..., Any],
    arguments: tuple[torch.Tensor, ...],
    problem: Problem,
    direction: torch.Tensor,
    seed: int,
    label: str,
) -> Sequence[torch.Tensor | None]:
    """The tangents of fn's differentiated outputs (float64, CPU; None where an output has
    none: zero) along the flat ``direction``."""
    copies = [storage_copy(a) for a in arguments]
    device = copies[problem.specs[0].position].device if problem.specs else torch.device("cpu")
    with warnings.catch_warnings(), torch.enable_grad(), fwAD.dual_level():
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated")
        for spec in problem.specs:
            # Requiring grad keeps the tangent alive through a function that runs backward
            # inside (forward mode over autograd's gradient: the JVP of a VJP).
            primal = copies[spec.position].requires_grad_(True)
            tangent = direction[spec.offset : spec.offset + spec.numel].view(spec.shape)
            copies[spec.position] = fwAD.make_dual(
                primal, tangent.to(device=primal.device, dtype=primal.dtype)
            )
        with frozen_rng(seed, device):
            outputs = args.output_tuple(fn(*copies), label)
        found: list[torch.Tensor | None] = []
        for out, v in zip(outputs, problem.cotangents):
            if v is None:
                continue
            tangent = fwAD.unpack_dual(out).tangent
            found.append(
                None
                if tangent is None
                else tangent.detach().to("cpu", torch.float64).reshape(out.shape)
            )
    return found
