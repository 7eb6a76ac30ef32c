"""Which output a multi-output failure comes from.

A check judges one scalar ``L = sum_j <v_j, out_j>``, so its worst element mixes every output.
When a check of several judged outputs fails, the worst element's derivative is taken again
output by output, autograd (in float64) against the same oracle along the same probe, and the
output whose two sides differ most is named in the message and in ``result.worst.output``.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from gradcheck import messages
from gradcheck.oracles import Probes, Problem
from gradcheck.preparation import Prepared
from gradcheck.results import CheckResult, ElementReport


@dataclasses.dataclass(frozen=True)
class OutputSide:
    """One output's share of the worst element: autograd's and the oracle's derivative."""

    name: str
    autograd: float
    oracle: float

    @property
    def difference(self) -> float:
        """|autograd - oracle|, infinite when either is not a number."""
        gap = abs(self.autograd - self.oracle)
        return gap if math.isfinite(gap) else math.inf


def name_the_output(result: CheckResult, setup: Prepared) -> CheckResult:
    """``result`` with its worst element's output named, when it failed and fn has several
    judged outputs; unchanged otherwise (or when the per-output comparison cannot be made)."""
    judged = [j for j, v in enumerate(setup.problem.cotangents) if v is not None]
    if result.status != "failed" or result.worst is None or len(judged) < 2:
        return result
    probe = _probe_of(result.worst, setup)
    if probe is None:
        return result
    try:
        sides = [_side(setup, j, len(setup.problem.cotangents), probe) for j in judged]
    except Exception:  # the breakdown is a hint; the failure stands without it
        return result
    worst = max(sides, key=lambda side: side.difference)
    others = max((s.difference for s in sides if s is not worst), default=0.0)
    line = messages.worst_output_line(
        worst.name, worst.autograd, setup.oracle.name, worst.oracle, others
    )
    lines = result.message.split("\n")
    lines.insert(2, line)
    return dataclasses.replace(
        result,
        worst=dataclasses.replace(result.worst, output=worst.name),
        message="\n".join(lines),
    )


def _probe_of(worst: ElementReport, setup: Prepared) -> int | None:
    """The probe of the worst element (its random direction, or its flat input index)."""
    if worst.direction is not None:
        return worst.direction
    if worst.input is None or worst.index is None:
        return None
    for spec in setup.problem.specs:
        flat = spec.flat_index(worst.input, worst.index)
        if flat is not None:
            return spec.offset + flat
    return None


def _side(setup: Prepared, j: int, count: int, probe: int) -> OutputSide:
    """Output ``j``'s derivative along ``probe``: autograd in float64 and the oracle."""
    problem = setup.problem
    only = tuple(v if k == j else None for k, v in enumerate(problem.cotangents))
    alone = Problem(problem.fn, problem.arguments, problem.names, problem.specs, only, problem.seed)
    direction = setup.probes.direction(probe, problem.size, problem.device)
    with torch.inference_mode(False), torch.no_grad():
        estimate = setup.oracle.estimate(alone, Probes(count=1, directions=direction[None, :]))
    point = problem.point.clone().requires_grad_(True)
    with torch.inference_mode(False), torch.enable_grad():
        out = alone.outputs_at(point)[j].to(torch.float64)
        v = only[j]
        assert v is not None
        contraction = torch.where(v != 0, v * out, 0.0).sum()
        (gradient,) = torch.autograd.grad(contraction, point, allow_unused=True)
    along = 0.0 if gradient is None else float((gradient * direction).sum())
    return OutputSide(f"output[{j}]" if count > 1 else "output", along, estimate.values[0])
