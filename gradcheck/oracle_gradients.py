"""``oracle_gradient``: an oracle's own gradient ``v^T J`` of a function, with no autograd in
the answer: the number to compare a ``.grad`` against (the semantics checks and the scenarios
use it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from gradcheck.arguments import Cotangents, Inputs
from gradcheck.errors import InvalidArgument
from gradcheck.oracles import Oracle
from gradcheck.preparation import apply_undecided, prepare


@dataclass(frozen=True)
class OracleGradient:
    """An oracle's gradient ``v^T J`` of ``fn``, one float64 tensor per differentiable input.

    ``errors`` are the oracle's error estimates; ``lower``/``upper`` bound the valid subgradients
    where an element sits on a kink (NaN elsewhere); ``undecided`` is True where the oracle could
    not decide (its value is NaN). ``names`` are the inputs' names, ``positions`` their indices in
    ``inputs``.
    """

    oracle: str
    names: tuple[str, ...]
    positions: tuple[int, ...]
    values: tuple[torch.Tensor, ...]
    errors: tuple[torch.Tensor, ...]
    lower: tuple[torch.Tensor, ...]
    upper: tuple[torch.Tensor, ...]
    undecided: tuple[torch.Tensor, ...]

    def __getitem__(self, name: str) -> torch.Tensor:
        """The gradient with respect to the input called ``name``."""
        if name not in self.names:
            raise InvalidArgument(
                f"Got name={name!r}, but the differentiable inputs are {list(self.names)}."
            )
        return self.values[self.names.index(name)]


def oracle_gradient(
    fn: Callable[..., Any],
    inputs: Inputs,
    *,
    oracle: str | Oracle = "finite_difference",
    expr: Any = None,
    cotangents: Cotangents = None,
    seed: int = 0,
) -> OracleGradient:
    """The oracle's own gradient of ``fn`` at ``inputs`` (no autograd involved in the answer).

    Takes the same ``fn``, ``inputs``, ``oracle``, ``expr``, ``cotangents`` and ``seed`` as
    :func:`check_function` and returns, per element of every differentiable input, the oracle's
    ``v^T J`` with its error estimate: the number to compare a ``.grad`` against.
    """
    setup = prepare(fn, inputs, oracle, expr, seed, None, cotangents, basis=True)
    if setup.impure is not None:
        raise InvalidArgument(f"Got an fn the oracle cannot differentiate: {setup.impure}.")
    with torch.inference_mode(False), torch.no_grad():
        estimate = setup.oracle.estimate(setup.problem, setup.probes)
    apply_undecided(estimate, setup.undecided)
    columns: dict[str, list[Any]] = {"values": [], "errors": [], "lower": [], "upper": []}
    undecided = []
    for spec in setup.problem.specs:
        span = slice(spec.offset, spec.offset + spec.numel)
        for key, numbers in (
            ("values", estimate.values),
            ("errors", estimate.errors),
            ("lower", estimate.lower),
            ("upper", estimate.upper),
        ):
            chunk = [math.nan if v is None else v for v in numbers[span]]
            columns[key].append(torch.tensor(chunk, dtype=torch.float64).view(spec.shape))
        reasons = [r is not None for r in estimate.reasons[span]]
        undecided.append(torch.tensor(reasons, dtype=torch.bool).view(spec.shape))
    return OracleGradient(
        oracle=setup.oracle.name,
        names=tuple(spec.name for spec in setup.problem.specs),
        positions=tuple(spec.position for spec in setup.problem.specs),
        values=tuple(columns["values"]),
        errors=tuple(columns["errors"]),
        lower=tuple(columns["lower"]),
        upper=tuple(columns["upper"]),
        undecided=tuple(undecided),
    )
