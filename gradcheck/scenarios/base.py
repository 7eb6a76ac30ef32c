"""The shape of a scenario, how one runs, and the claim builders every scenario module shares.

A :class:`Scenario` is a small declarative record: an id that names the topic, the source it
comes from, the oracles that judge it, tags, the modules it needs, and ``verify``, a named
module-level function that takes a seed and returns the :class:`~gradcheck.results.Claim` list it
proved. :func:`run_scenario` turns that into a :class:`~gradcheck.results.ScenarioResult`; a
scenario whose required module is missing is *skipped* with the reason, never passed.
"""

from __future__ import annotations

import importlib.util
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gradcheck.arguments import Cotangents
from gradcheck.check import check_function
from gradcheck.oracle_gradients import oracle_gradient
from gradcheck.recording import recorded
from gradcheck.results import CheckResult, Claim, ScenarioResult, claims_status
from gradcheck.status import FAILED, SKIPPED
from gradcheck.values import as_floats, check_stated, check_values

SOURCES = {
    "neuron": "seeds/000 AutoGrad in PyTorch (German): one-neuron ReLU network",
    "chain": "seeds/001 Reverse Automatic Differentiation mit PyTorch (German)",
    "basics": "seeds/002 Autograd Package helps in calculating Gradients",
    "torch_autograd": "seeds/003 torch.autograd: ResNet18, Q = 3a^3 - b^2",
    "linear": "seeds/004 Autograd: linear model with MSE, ResNet18",
    "gradcheck": "gradcheck's own tables",
}
"""Where scenarios come from: the five notebooks in ``seeds/`` and the suite's own tables."""

KINK_AWARE_ORACLES = ("finite_difference", "sympy")
"""Oracles that can tell a kink; forward-mode AD only sees the one-sided value torch picks."""


@dataclass(frozen=True)
class Scenario:
    """One notebook claim (or family of claims) about gradients, as the suite proves it.

    ``id`` names the topic (``neuron/relu_backward``); ``topic`` is the source's subject;
    ``source`` names where the claim comes from (a notebook in ``seeds/``, or ``"gradcheck"``
    for the suite's own tables); ``verify(seed)`` returns the claims; ``oracles`` lists the
    judges it uses; ``requires`` lists importable modules it needs (missing: skipped).
    """

    id: str
    topic: str
    source: str
    verify: Callable[[int], Sequence[Claim]]
    oracles: tuple[str, ...]
    tags: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()


def notebook_scenario(
    scenario_id: str,
    verify: Callable[[int], Sequence[Claim]],
    oracles: tuple[str, ...],
    *tags: str,
    topic: str,
    source: str,
    requires: tuple[str, ...] = (),
) -> Scenario:
    """A scenario proving claims of the notebook ``SOURCES[source]``, tagged ``"notebook"``."""
    return Scenario(
        id=scenario_id,
        topic=topic,
        source=SOURCES[source],
        verify=verify,
        oracles=oracles,
        tags=("notebook", *tags),
        requires=requires,
    )


def missing_requirement(scenario: Scenario) -> str | None:
    """The reason ``scenario`` cannot run here (a required module is missing), or None."""
    for module in scenario.requires:
        if importlib.util.find_spec(module) is None:
            return (
                f"needs {module}, which is not installed: pip install -e '.[models]' "
                "-c constraints/ci.txt"
            )
    return None


@recorded
def run_scenario(scenario: Scenario, *, seed: int = 0) -> ScenarioResult:
    """Run ``scenario``'s verify function and collect its claims into a result.

    An exception inside ``verify`` fails the scenario, with the exception in ``reason``.
    """
    started = time.perf_counter()
    reason = missing_requirement(scenario)
    if reason is not None:
        return ScenarioResult(scenario.id, scenario.topic, SKIPPED, (), seed, 0.0, reason)
    try:
        claims = tuple(scenario.verify(seed))
    except Exception as error:  # a crash is a failed scenario, reported with its cause
        lines = traceback.format_exception_only(type(error), error)
        return ScenarioResult(
            scenario.id,
            scenario.topic,
            FAILED,
            (),
            seed,
            time.perf_counter() - started,
            f"verify raised {''.join(lines).strip()}",
        )
    status = claims_status(claims) if claims else FAILED
    if not claims:
        reason = "verify returned no claims"
    elif status == SKIPPED:
        reason = "no claim could be judged on this torch: " + "; ".join(c.skipped for c in claims)
    else:
        reason = ""
    return ScenarioResult(
        scenario.id,
        scenario.topic,
        status,
        claims,
        seed,
        time.perf_counter() - started,
        reason,
    )


# -- claim builders ----------------------------------------------------------------------------


def grad_of(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor.grad``; a None gradient is an error (the scenario then fails with the reason)."""
    if tensor.grad is None:
        raise AssertionError(f"tensor of shape {tuple(tensor.shape)} has .grad None after backward")
    return tensor.grad


def fact(statement: str, holds: bool, detail: str) -> Claim:
    """A claim that is true or false by observation (a grad_fn name, an error raised)."""
    return Claim(statement=statement, passed=bool(holds), detail=detail)


def reproduce_line(scenario_id: str, seed: int) -> str:
    """The command that re-runs one scenario."""
    return f"gradcheck run -k {scenario_id} --seed {seed}"


def value_claim(
    statement: str,
    measured: torch.Tensor | float,
    *,
    oracles: Sequence[tuple[str, Any, Any]],
    stated: Sequence[str] | None = None,
    stated_error: float | Sequence[float] | None = None,
    name: str,
    scenario_id: str,
    seed: int,
) -> Claim:
    """A numeric claim: ``measured`` judged by each ``(oracle, expected, errors)`` and, when the
    source printed it, by the ``stated`` text at its printed precision."""
    reproduce = reproduce_line(scenario_id, seed)
    checks: list[CheckResult] = [
        check_values(
            name, measured, expected, oracle=oracle, errors=errors, seed=seed, reproduce=reproduce
        )
        for oracle, expected, errors in oracles
    ]
    if stated is not None:
        checks.append(
            check_stated(name, measured, stated, extra_error=stated_error, reproduce=reproduce)
        )
    return Claim.from_checks(statement, checks, stated=stated, measured=as_floats(measured))


def oracle_values(
    fn: Callable[..., torch.Tensor],
    inputs: Sequence[torch.Tensor],
    wrt: str,
    *,
    oracles: Sequence[str],
    expr: str | None = None,
    cotangents: Cotangents = None,
    seed: int = 0,
) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """Each oracle's own gradient of ``fn`` with respect to the input named ``wrt``, with its
    error estimate: the ``(oracle, expected, errors)`` triples :func:`value_claim` takes."""
    judged = []
    for oracle in oracles:
        gradient = oracle_gradient(
            fn,
            inputs,
            oracle=oracle,
            expr=expr if oracle == "sympy" else None,
            cotangents=cotangents,
            seed=seed,
        )
        index = gradient.names.index(wrt)
        judged.append((oracle, gradient.values[index], gradient.errors[index]))
    return judged


def gradient_claim(
    statement: str,
    measured: torch.Tensor,
    fn: Callable[..., torch.Tensor],
    inputs: Sequence[torch.Tensor],
    wrt: str,
    *,
    oracles: Sequence[str],
    expr: str | None = None,
    cotangents: Cotangents = None,
    times: int = 1,
    stated: Sequence[str] | None = None,
    stated_error: float | Sequence[float] | None = None,
    scenario_id: str,
    seed: int,
) -> Claim:
    """A ``.grad`` the notebook way (``measured``, after ``times`` backward passes) against
    ``times`` x each oracle's own gradient of ``fn`` with respect to the input named ``wrt``,
    and against the ``stated`` printout."""
    judged = oracle_values(
        fn, inputs, wrt, oracles=oracles, expr=expr, cotangents=cotangents, seed=seed
    )
    return value_claim(
        statement,
        measured,
        oracles=[(oracle, times * values, times * errors) for oracle, values, errors in judged],
        stated=stated,
        stated_error=stated_error,
        name=wrt + ".grad",
        scenario_id=scenario_id,
        seed=seed,
    )


def function_claims(
    fn: Callable[..., torch.Tensor],
    inputs: Sequence[torch.Tensor] | torch.Tensor,
    *,
    oracles: Sequence[str],
    expr: str | None = None,
    expect: str = "pass",
    cotangents: Cotangents = None,
    scenario_id: str,
    seed: int,
) -> list[Claim]:
    """``check_function`` against each oracle, one claim per oracle.

    ``expect`` is ``"pass"``, ``"kink"`` (pass, with elements marked as kinks by the kink-aware
    oracles) or ``"fail"`` (a planted bug: the claim is that the oracle catches it).
    """
    claims = []
    for oracle in oracles:
        result = check_function(
            fn,
            inputs,
            oracle=oracle,
            expr=expr if oracle == "sympy" else None,
            cotangents=cotangents,
            seed=seed,
            name=scenario_id,
        )
        if expect == "fail":
            statement = f"the planted bug is caught by {oracle}"
            holds = result.status == FAILED
        elif expect == "kink" and oracle in KINK_AWARE_ORACLES:
            statement = f"autograd matches {oracle}, with the kinks marked"
            holds = result.passed and bool(result.kinks)
        else:
            statement = f"autograd matches {oracle}"
            holds = result.passed
        claims.append(
            Claim(statement=statement, passed=holds, detail=result.message, checks=(result,))
        )
    return claims
