"""Forward-mode AD as an independent AD path (``oracle="forward"``).

For each probe direction ``u`` the oracle pushes ``u`` forward through the function with
:func:`torch.func.jvp` in float64 and contracts the resulting tangent ``J u`` with the cotangent:
``<v, J u>`` must equal autograd's ``<v^T J, u>``. Forward and reverse mode share no derivative
code path for most operators, and none for a ``torch.autograd.Function`` with its own ``jvp``.
The error estimate is the rounding of the contraction. A function that has no forward-mode
formula (for example an ``autograd.Function`` without ``jvp``) makes the check inconclusive.
"""

from __future__ import annotations

import warnings

import torch

from gradcheck.oracles.base import EPS64, Estimate, Oracle, Probes, Problem
from gradcheck.tolerances import FORWARD_ROUNDING_FACTOR


class Forward(Oracle):
    """Forward-mode AD through :func:`torch.func.jvp`, in float64."""

    name = "forward"

    def estimate(self, problem: Problem, probes: Probes) -> Estimate:
        """``<v, J u>`` for every probe ``u``, by one JVP each."""
        result = Estimate.empty(probes.count)

        def outputs(flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(problem.floating_outputs_at(flat))

        for p in range(probes.count):
            direction = probes.direction(p, problem.size, problem.device)
            try:
                with warnings.catch_warnings():
                    # torch's own first-use of jvp decompositions calls a deprecated JIT API.
                    warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated")
                    tangents = torch.func.jvp(outputs, (problem.point,), (direction,))[1]
            except (RuntimeError, NotImplementedError) as error:
                reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
                result.reasons = [f"forward-mode AD is not available here: {reason}"] * probes.count
                return result
            value = torch.zeros((), dtype=torch.float64)
            magnitude = torch.zeros((), dtype=torch.float64)
            for cotangent, tangent in zip(problem.used_cotangents, tangents):
                # Output elements left out of the check (v = 0: NaN/Inf at the input) never
                # contribute, even where their tangent is NaN.
                terms = torch.where(cotangent != 0, cotangent * tangent, 0.0).cpu()
                value += terms.sum()
                magnitude += terms.abs().sum()
            result.values[p] = float(value)
            result.errors[p] = FORWARD_ROUNDING_FACTOR * EPS64 * float(magnitude)
        return result
