"""The scenario catalog: small declarative records of what the suite must prove.

A :class:`Scenario` names a computation (``build`` returns the function and its inputs), the
oracles that judge it, and what must come out: ``"pass"``, ``"kink"`` (pass, with elements marked
as kinks) or ``"fail"`` (a planted bug the suite must catch). :func:`run_scenario` runs one
scenario against each of its oracles; :func:`outcome_matches` says whether a result is what the
scenario expects. ``CATALOG`` holds every scenario, keyed by id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from gradcheck.check import check_function
from gradcheck.results import CheckResult
from gradcheck.scenarios import planted
from gradcheck.scenarios.calculus import KNOWN_DERIVATIVES, KnownDerivative

Built = tuple[Callable[..., torch.Tensor], tuple[torch.Tensor, ...]]

EXPECTATIONS = ("pass", "kink", "fail")
ALL_ORACLES = ("finite_difference", "sympy", "forward")
KINK_AWARE_ORACLES = ("finite_difference", "sympy")
"""Oracles that can tell a kink; forward-mode AD only sees the one-sided value torch picks."""


@dataclass(frozen=True)
class Scenario:
    """One claim about gradients, checked against each of ``oracles``.

    ``expr`` is the SymPy formula for the ``"sympy"`` oracle; ``expect`` is ``"pass"``,
    ``"kink"`` or ``"fail"``; ``tags`` classify it (``"kink"``, ``"planted-bug"``, ...).
    """

    id: str
    topic: str
    build: Callable[[], Built]
    oracles: tuple[str, ...]
    expr: str | None = None
    expect: str = "pass"
    tags: tuple[str, ...] = ()


def run_scenario(scenario: Scenario, *, seed: int = 0) -> list[CheckResult]:
    """Check the scenario's computation against each of its oracles."""
    results = []
    for oracle in scenario.oracles:
        fn, inputs = scenario.build()
        results.append(
            check_function(
                fn,
                inputs,
                oracle=oracle,
                expr=scenario.expr if oracle == "sympy" else None,
                seed=seed,
                name=scenario.id,
            )
        )
    return results


def outcome_matches(scenario: Scenario, result: CheckResult) -> bool:
    """True when ``result`` is what ``scenario`` expects (a planted bug must fail)."""
    if scenario.expect == "fail":
        return result.status == "failed"
    if scenario.expect == "kink" and result.oracle in KINK_AWARE_ORACLES:
        return result.passed and bool(result.kinks)
    return result.passed


def _known(entry: KnownDerivative) -> Scenario:
    def build() -> Built:
        return entry.fn, (torch.tensor(entry.points, dtype=torch.float64),)

    return Scenario(
        id=f"calculus/{entry.id}",
        topic="Known derivatives",
        build=build,
        oracles=ALL_ORACLES,
        expr=entry.expr,
        expect="kink" if entry.kinks else "pass",
        tags=entry.tags,
    )


def _random_points(n: int, seed: int, low: float = -2.0, high: float = 2.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


_PLANTED = (
    Scenario(
        id="planted/sin_backward_off_by_1e-6",
        topic="Planted bugs",
        build=lambda: (planted.SinOffByOnePpm.apply, (_random_points(8, 1),)),
        oracles=ALL_ORACLES,
        expr="sin(x)",
        expect="fail",
        tags=("planted-bug",),
    ),
    Scenario(
        id="planted/relu_backward_2_at_kink",
        topic="Planted bugs",
        build=lambda: (
            planted.ReluTwoAtKink.apply,
            (torch.tensor([-1.0, 0.0, 0.5, 0.0], dtype=torch.float64),),
        ),
        oracles=("finite_difference", "sympy"),
        expr="Max(0, x)",
        expect="fail",
        tags=("planted-bug", "kink"),
    ),
    Scenario(
        id="planted/square_wrong_at_index_3",
        topic="Planted bugs",
        build=lambda: (planted.SquareWrongAtOneIndex.apply, (_random_points(6, 2).reshape(2, 3),)),
        oracles=ALL_ORACLES,
        expr="x**2",
        expect="fail",
        tags=("planted-bug",),
    ),
    Scenario(
        id="planted/exp_square_missing_chain_rule",
        topic="Planted bugs",
        build=lambda: (planted.ExpSquareMissingChainRule.apply, (_random_points(5, 3),)),
        oracles=ALL_ORACLES,
        expr="exp(x**2)",
        expect="fail",
        tags=("planted-bug",),
    ),
    Scenario(
        id="planted/detached_branch",
        topic="Planted bugs",
        build=lambda: (planted.detached_branch, (_random_points(5, 4),)),
        oracles=("finite_difference", "sympy"),
        expr="x*sin(x)",
        expect="fail",
        tags=("planted-bug",),
    ),
)

CATALOG: dict[str, Scenario] = {
    scenario.id: scenario
    for scenario in (*(_known(entry) for entry in KNOWN_DERIVATIVES), *_PLANTED)
}
"""Every scenario, keyed by id."""
