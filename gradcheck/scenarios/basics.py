"""Autograd basics on small vectors (seeds/002): the mean of a square, vector backward,
turning tracking off, and gradient accumulation.

The notebook draws ``x = torch.randn(3)`` without a seed and prints the results, so its numbers
are reproduced from its printed inputs: ``x = [1.3505, 0.9042, -0.7476]`` for the mean, and for
the vector backward the ``x`` recovered from its printed ``z = 2*(x+2)**2`` (``x = sqrt(z/2) - 2``).
The printed inputs carry 4-5 significant digits, so each stated output is compared within its
own half-unit plus that input rounding carried through the derivative. The rules themselves are
also checked on seeded random inputs in float64.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import torch

from gradcheck.results import Claim
from gradcheck.scenarios.base import (
    fact,
    grad_of,
    gradient_claim,
    notebook_scenario,
    value_claim,
)
from gradcheck.semantics import (
    check_accumulation,
    check_tracking_off,
    check_vector_backward,
)
from gradcheck.torch_versions import GRAD_FN_NAMES, versioned_claim

TOPIC = "Autograd basics: grad_fn, mean, vector backward, no_grad/detach, accumulation"
PRINTED_X = ("1.3505", "0.9042", "-0.7476")
PRINTED_Z = ("5.1947", "29.2177", "12.3928")
NOTEBOOK_V = (0.1, 1.0, 0.001)
SQUARE = "2*(x + 2)**2"


def square(x: torch.Tensor) -> torch.Tensor:
    """``z = (x + 2) * (x + 2) * 2`` elementwise, as the notebook builds it."""
    y = x + 2
    return y * y * 2


def mean_square(x: torch.Tensor) -> torch.Tensor:
    """``mean(2*(x+2)**2)``."""
    return square(x).mean()


def _random_x(seed: int, n: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=generator, dtype=torch.float64)


def verify_mean(seed: int) -> list[Claim]:
    """grad_fn chain Add/Mul/Mean, and ``x.grad = 4*(x+2)/3`` (SymPy: the mean is the cotangent
    1/3 on the elementwise square)."""
    scenario_id = "mean/square_mean_backward"
    x = torch.tensor([float(t) for t in PRINTED_X], requires_grad=True)
    y = x + 2
    z_elements = y * y * 2
    z = z_elements.mean()
    names = [type(t.grad_fn).__name__ for t in (y, z_elements, z)]
    claims = [
        versioned_claim(
            "grad_fn chain is AddBackward0, MulBackward0, MeanBackward0",
            names == ["AddBackward0", "MulBackward0", "MeanBackward0"],
            f"y, z, z.mean() have grad_fn {', '.join(names)}",
            GRAD_FN_NAMES,
        ),
        value_claim(
            "z = 2*(x+2)**2 is printed as [22.4515, 16.8692, 3.1369]",
            z_elements.detach(),
            oracles=(),
            stated=("22.4515", "16.8692", "3.1369"),
            stated_error=(4 * (y.detach().abs() + 0.5e-4) * 0.5e-4).tolist(),
            name="z",
            scenario_id=scenario_id,
            seed=seed,
        ),
        value_claim(
            "z.mean() is printed as 14.1525",
            z.detach(),
            oracles=(),
            stated=("14.1525",),
            stated_error=float((4 * y.detach().abs()).mean() * 0.5e-4) + 1e-8,
            name="z.mean()",
            scenario_id=scenario_id,
            seed=seed,
        ),
    ]
    z.backward()
    third = torch.full((3,), 1 / 3, dtype=torch.float64)
    claims.append(
        gradient_claim(
            "x.grad == 4*(x+2)/3 at the notebook's x, printed as [4.4673, 3.8723, 1.6698]",
            grad_of(x),
            square,
            (x.detach().double(),),
            "x",
            oracles=("sympy", "finite_difference"),
            expr=SQUARE,
            cotangents=third,
            stated=("4.4673", "3.8723", "1.6698"),
            stated_error=4 / 3 * 0.5e-4,
            scenario_id=scenario_id,
            seed=seed,
        )
    )
    random_x = _random_x(seed).requires_grad_(True)
    mean_square(random_x).backward()
    claims.append(
        gradient_claim(
            "x.grad == 4*(x+2)/3 at a seeded random x (float64)",
            grad_of(random_x),
            square,
            (random_x.detach(),),
            "x",
            oracles=("sympy", "finite_difference"),
            expr=SQUARE,
            cotangents=third,
            scenario_id=scenario_id,
            seed=seed,
        )
    )
    return claims


def verify_vector_backward(seed: int) -> list[Claim]:
    """``z.backward(v)`` is ``v^T J`` (SymPy) for the notebook's v and for a seeded random v."""
    scenario_id = "vector/backward_vjp"
    z_printed = torch.tensor([float(t) for t in PRINTED_Z], dtype=torch.float64)
    y = (z_printed / 2).sqrt()
    x = (y - 2).float().requires_grad_(True)  # the notebook's float32 x, recovered
    v = torch.tensor(NOTEBOOK_V, dtype=torch.float32)
    square(x).backward(v)
    v64 = v.double()
    claims = [
        gradient_claim(
            "z.backward(v) with v = [0.1, 1.0, 0.001] gives v^T J, printed as "
            "[6.4465e-01, 1.5289e+01, 9.9570e-03]",
            grad_of(x),
            square,
            (x.detach().double(),),
            "x",
            oracles=("sympy", "finite_difference"),
            expr=SQUARE,
            cotangents=v64,
            stated=("6.4465e-01", "1.5289e+01", "9.9570e-03"),
            stated_error=(v64 * 0.5e-4 / y + 1e-7 * v64 * y).tolist(),
            scenario_id=scenario_id,
            seed=seed,
        )
    ]
    notebook_v = check_vector_backward(
        square, x.detach().double(), cotangents=v64, oracle="sympy", expr=SQUARE, seed=seed
    )
    random_v = check_vector_backward(
        square, _random_x(seed), oracle="sympy", expr=SQUARE, seed=seed
    )
    random_v_fd = check_vector_backward(square, _random_x(seed), seed=seed)
    for result, label in (
        (notebook_v, "notebook v"),
        (random_v, "random v"),
        (random_v_fd, "random v"),
    ):
        claims.extend(
            dataclasses.replace(c, statement=f"{c.statement} [{label}]") for c in result.claims
        )
    return claims


def add_two(x: torch.Tensor) -> torch.Tensor:
    """``y = x + 2``, the notebook's example for turning tracking off."""
    return x + 2


def _verify_tracking(method: str):
    def verify(seed: int) -> list[Claim]:
        x = _random_x(seed).requires_grad_(True)
        claims = [fact("x.requires_grad is True", x.requires_grad, "x = randn(3, requires_grad)")]
        claims.extend(check_tracking_off(add_two, x, methods=(method,), seed=seed).claims)
        claims.extend(check_tracking_off(square, x, methods=(method,), seed=seed).claims)
        return claims

    verify.__name__ = f"verify_tracking_{method}"
    verify.__doc__ = f"Tracking off with {method}: no graph, same values, no gradient flow."
    return verify


def times_three(weights: torch.Tensor) -> torch.Tensor:
    """``weights * 3`` elementwise (the sum is the cotangent of ones, for the SymPy oracle)."""
    return weights * 3


def times_three_sum(weights: torch.Tensor) -> torch.Tensor:
    """``(weights * 3).sum()``, the notebook's model output."""
    return times_three(weights).sum()


ONES = torch.ones(4, dtype=torch.float64)


def verify_repeated_backward(seed: int) -> list[Claim]:
    """``(weights*3).sum()`` backward k times gives 3k in every element (k = 1, 2, 3)."""
    scenario_id = "accumulation/repeated_backward"
    claims = []
    for epochs in (1, 2, 3):
        weights = torch.ones(4, requires_grad=True)
        printed = []
        for _ in range(epochs):
            times_three_sum(weights).backward()
            printed.append(grad_of(weights).detach().clone())
        for k, grad in enumerate(printed, start=1):
            claims.append(
                gradient_claim(
                    f"loop of {epochs}: after pass {k}, weights.grad == {3 * k} everywhere",
                    grad,
                    times_three,
                    (ONES,),
                    "weights",
                    oracles=("sympy",),
                    expr="3*weights",
                    cotangents=ONES,
                    times=k,
                    stated=(f"{3 * k}.",) * 4,
                    scenario_id=scenario_id,
                    seed=seed,
                )
            )
    claims.extend(check_accumulation(times_three_sum, _random_x(seed, 4), seed=seed).claims)
    return claims


def verify_zero_each_step(seed: int) -> list[Claim]:
    """With ``weights.grad.zero_()`` after each pass the gradient stays 3."""
    scenario_id = "accumulation/zero_each_step"
    weights = torch.ones(4, requires_grad=True)
    claims = []
    for k in range(1, 4):
        times_three_sum(weights).backward()
        claims.append(
            gradient_claim(
                f"pass {k} with grad.zero_() after each: weights.grad == 3 everywhere",
                grad_of(weights).detach().clone(),
                times_three,
                (ONES,),
                "weights",
                oracles=("sympy",),
                expr="3*weights",
                cotangents=ONES,
                stated=("3.",) * 4,
                scenario_id=scenario_id,
                seed=seed,
            )
        )
        grad_of(weights).zero_()
    return claims


_scenario = partial(notebook_scenario, topic=TOPIC, source="basics")


SCENARIOS = (
    _scenario(
        "mean/square_mean_backward",
        verify_mean,
        ("sympy", "finite_difference", "stated"),
        "grad_fn",
        "reduction",
    ),
    _scenario(
        "vector/backward_vjp",
        verify_vector_backward,
        ("sympy", "finite_difference", "stated"),
        "vector-backward",
    ),
    *(
        _scenario(f"tracking/{name}", _verify_tracking(method), ("formula",), "tracking-off")
        for name, method in (
            ("detach", "detach"),
            ("requires_grad_false", "requires_grad_"),
            ("no_grad", "no_grad"),
            ("inference_mode", "inference_mode"),
        )
    ),
    _scenario(
        "accumulation/repeated_backward",
        verify_repeated_backward,
        ("sympy", "formula", "stated"),
        "accumulation",
    ),
    _scenario(
        "accumulation/zero_each_step",
        verify_zero_each_step,
        ("sympy", "stated"),
        "accumulation",
        "zero_grad",
    ),
)
