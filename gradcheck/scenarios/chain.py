"""Scalar chains, the squared loss and the 10-epoch gradient-descent loop (seeds/001).

Claims: ``b = a + 2`` with ``b.backward(gradient=123)`` gives ``a.grad = 123``; ``c = (a+2)*3``
gives 369; at a=100 the score is 306, the squared loss ``((a+2)*3 - 290)**2`` is 256 and its
gradient 96; and the training loop (lr=0.01, start 100, target 290) prints the loss and weight
trajectory below.

Precision of the loop. The update is affine in the weight, ``w <- 0.82 w + 17.04``, so SymPy
gives the exact trajectory ``w_n = 284/3 + (16/3) 0.82^n`` in rationals. The notebook's first
epoch runs in float32 (``torch.tensor(100.)``), where the gradient 96 is exact; from then on
``weight`` is a NumPy float64 (NumPy 1.x promoted ``python float * 0-d float32 array`` to
float64), so ``torch.tensor(weight)`` is float64 and the printed weights are float64 results:
every printed digit reproduces bit for bit, and they sit within 1 float64 ulp (measured) of
the exact trajectory, so the first 15 significant digits are exact and trailing
digits such as the ``...0000001`` of ``98.25280000000001`` are float64 rounding. The losses are
printed with 3 decimals, all of them exact. Under NumPy >= 2 (NEP 50) the same code stays in
float32 and prints ``99.04000091552734``: the losses still agree to 3 decimals, the weights only
to float32 precision.
"""

from __future__ import annotations

import importlib.util
import math
from functools import partial
from typing import Any

import torch

from gradcheck.oracles.symbolic import exact_value, gradient_descent_trajectory
from gradcheck.results import Claim
from gradcheck.scenarios.base import (
    fact,
    grad_of,
    gradient_claim,
    notebook_scenario,
    value_claim,
)

TOPIC = "Reverse-mode AD on a scalar: chain rule, squared loss, gradient descent"
LOSS = "((a + 2)*3 - 290)**2"
STATED_LOSSES = (
    "256.000", "172.134", "115.743", "77.826", "52.330",
    "35.187", "23.660", "15.909", "10.697", "7.193",
)  # fmt: skip
STATED_WEIGHTS = (
    "99.04", "98.25280000000001", "97.607296", "97.07798272000001", "96.64394583040001",
    "96.28803558092801", "95.99618917636097", "95.756875124616", "95.56063760218512",
    "95.3997228337918",
)  # fmt: skip


def _a(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor(100.0, dtype=dtype, requires_grad=True)


def plus_two(a: torch.Tensor) -> torch.Tensor:
    """``b = a + 2``."""
    return a + 2.0


def times_three(a: torch.Tensor) -> torch.Tensor:
    """``c = (a + 2) * 3``."""
    return (a + 2.0) * 3.0


def squared_loss(a: torch.Tensor) -> torch.Tensor:
    """``((a + 2) * 3 - 290)**2``: the notebook's score against its target, squared."""
    return ((a + 2.0) * 3.0 - 290.0) ** 2


def verify_external_gradient(seed: int) -> list[Claim]:
    """``backward(gradient=123)`` scales the chain rule: 123 for ``a + 2``, 369 for ``(a+2)*3``."""
    scenario_id = "chain/external_gradient"
    claims = []
    for fn, expr, stated in ((plus_two, "a + 2", "123."), (times_three, "(a + 2)*3", "369.")):
        a = _a()
        out = fn(a)
        out.backward(gradient=torch.tensor(123.0))
        claims.append(
            gradient_claim(
                f"{expr}: backward(gradient=123) gives a.grad == {stated.rstrip('.')}",
                grad_of(a),
                fn,
                (_a(torch.float64).detach(),),
                "a",
                oracles=("sympy", "finite_difference"),
                expr=expr,
                cotangents=torch.tensor(123.0, dtype=torch.float64),
                stated=(stated,),
                scenario_id=scenario_id,
                seed=seed,
            )
        )
    return claims


def verify_squared_loss(seed: int) -> list[Claim]:
    """At a=100: score 306, loss 256, gradient 96."""
    scenario_id = "chain/squared_loss"
    a = _a()
    score = times_three(a)
    loss = (score - 290.0) ** 2
    loss.backward()
    claims = [
        value_claim(
            "the model score (a + 2)*3 is 306",
            score.detach(),
            oracles=(("sympy", exact_value("(a + 2)*3", {"a": 100.0}), None),),
            stated=("306.0",),
            name="y_pred",
            scenario_id=scenario_id,
            seed=seed,
        ),
        value_claim(
            "the squared loss is 256",
            loss.detach(),
            oracles=(("sympy", exact_value(LOSS, {"a": 100.0}), None),),
            stated=("256.0",),
            name="loss",
            scenario_id=scenario_id,
            seed=seed,
        ),
        gradient_claim(
            "loss.backward() gives a.grad == 96",
            grad_of(a),
            squared_loss,
            (_a(torch.float64).detach(),),
            "a",
            oracles=("sympy", "finite_difference"),
            expr=LOSS,
            stated=("96.",),
            scenario_id=scenario_id,
            seed=seed,
        ),
    ]
    return claims


def notebook_loop(epochs: int = 10) -> tuple[list[float], list[float]]:
    """The training loop as the notebook ran it: float32 in epoch 1, float64 afterwards (NumPy
    1.x promotion), the update in float64. Returns the losses and the weights after each step."""
    weight: float = 100.0
    losses, weights = [], []
    for epoch in range(epochs):
        a = torch.tensor(weight, dtype=torch.float32 if epoch == 0 else torch.float64)
        a.requires_grad_(True)
        loss = squared_loss(a)
        loss.backward()
        weight = weight - 0.01 * float(grad_of(a))
        losses.append(loss.item())
        weights.append(weight)
    return losses, weights


def verify_gradient_descent_loop(seed: int) -> list[Claim]:
    """The 10-epoch loop reproduces the printed losses and weights (see the module docstring)."""
    scenario_id = "training/gradient_descent_loop"
    exact_weights, exact_losses, closed_form = gradient_descent_trajectory(
        LOSS, "a", start="100", lr="0.01", steps=10
    )
    losses, weights = notebook_loop()
    printed = [repr(w) for w in weights]
    matching = sum(p == s for p, s in zip(printed, STATED_WEIGHTS))
    claims = [
        value_claim(
            f"the weights follow the exact trajectory {closed_form} (SymPy, rationals)",
            torch.tensor(weights, dtype=torch.float64),
            oracles=(("formula", exact_weights, None),),
            stated=STATED_WEIGHTS,
            name="weight",
            scenario_id=scenario_id,
            seed=seed,
        ),
        fact(
            "every printed weight reproduces digit for digit (float64 from epoch 2 on)",
            matching == len(STATED_WEIGHTS),
            f"{matching} of {len(STATED_WEIGHTS)} reprs identical; "
            f"max ulps from the exact trajectory {_max_ulps(weights, exact_weights)}",
        ),
        value_claim(
            "the losses follow the exact trajectory (printed with 3 decimals)",
            torch.tensor(losses, dtype=torch.float64),
            oracles=(("formula", exact_losses, None),),
            stated=STATED_LOSSES,
            name="loss",
            scenario_id=scenario_id,
            seed=seed,
        ),
    ]
    if importlib.util.find_spec("numpy") is not None:
        claims.append(_literal_notebook_claim(exact_weights, scenario_id, seed))
    return claims


def _max_ulps(values: list[float], exact: list[float]) -> int:
    return max(round(abs(v - e) / math.ulp(e)) for v, e in zip(values, exact))


def _literal_notebook_claim(exact_weights: list[float], scenario_id: str, seed: int) -> Claim:
    """The notebook's code verbatim, under the NumPy installed here."""
    import numpy as np

    weight: Any = 100.0
    weights = []
    for _ in range(10):
        a = torch.tensor(weight, requires_grad=True)
        squared_loss(a).backward()
        weight = weight - 0.01 * grad_of(a).detach().numpy()
        weights.append(float(weight))
    dtype = np.asarray(weight).dtype
    claim = value_claim(
        f"the notebook's literal code under NumPy {np.__version__} runs in {dtype} and stays "
        "within its precision of the exact trajectory",
        torch.tensor(weights, dtype=torch.float32 if dtype == np.float32 else torch.float64),
        oracles=(("formula", exact_weights, None),),
        name="weight (literal code)",
        scenario_id=scenario_id,
        seed=seed,
    )
    return claim


_notebook = partial(notebook_scenario, topic=TOPIC, source="chain")

SCENARIOS = (
    _notebook(
        "chain/external_gradient",
        verify_external_gradient,
        ("sympy", "finite_difference", "stated"),
        "chain-rule",
    ),
    _notebook(
        "chain/squared_loss",
        verify_squared_loss,
        ("sympy", "finite_difference", "stated"),
        "loss",
    ),
    _notebook(
        "training/gradient_descent_loop",
        verify_gradient_descent_loop,
        ("formula", "stated"),
        "training-loop",
        "closed-form",
    ),
)
