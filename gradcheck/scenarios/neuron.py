"""The one-neuron ReLU network ``a = relu(w*x + b)`` at x=3, w=2, b=1 (seeds/000).

The notebook's claims: ``a.grad_fn`` is ReluBackward0 and ``m.grad_fn`` AddBackward0;
``a.backward()`` gives ``w.grad = 3`` and ``b.grad = 1``; a second forward and backward doubles
them to 6 and 2 (so gradients must be zeroed each batch); ``SGD(lr=0.001).step()`` then gives
w = 2 - 0.001*6 = 1.994 and b = 1 - 0.001*2 = 0.998; ``zero_grad()`` clears them. The notebook's
tensors are float32; every oracle works in float64 (SymPy differentiates ``Max(0, w*x + b)``
into a Heaviside, so the kink at ``w*x + b = 0`` is handled exactly).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

from gradcheck.results import Claim
from gradcheck.scenarios.base import (
    grad_of,
    gradient_claim,
    notebook_scenario,
    value_claim,
)
from gradcheck.semantics import check_accumulation, check_zero_grad
from gradcheck.torch_versions import GRAD_FN_NAMES, versioned_claim

X = 3.0
EXPR = "Max(0, w*3 + b)"
LR = 0.001
TOPIC = "One-neuron ReLU network a = relu(w*x + b)"


def neuron(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The notebook's network with its input x=3 fixed: ``relu(w*x + b)``."""
    return F.relu(w * X + b)


def _parameters(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.tensor([2.0], dtype=dtype, requires_grad=True)
    b = torch.tensor([1.0], dtype=dtype, requires_grad=True)
    return w, b


def _truth() -> tuple[torch.Tensor, torch.Tensor]:
    w, b = _parameters()
    return w.detach().double(), b.detach().double()


def verify_relu_backward(seed: int) -> list[Claim]:
    """grad_fn types and the first backward: w.grad = 3, b.grad = 1."""
    scenario_id = "neuron/relu_backward"
    w, b = _parameters()
    m = w * X + b
    a = F.relu(m)
    claims = [
        versioned_claim(
            "a.grad_fn is ReluBackward0",
            type(a.grad_fn).__name__ == "ReluBackward0",
            f"a.grad_fn = {type(a.grad_fn).__name__}",
            GRAD_FN_NAMES,
        ),
        versioned_claim(
            "m.grad_fn is AddBackward0",
            type(m.grad_fn).__name__ == "AddBackward0",
            f"m.grad_fn = {type(m.grad_fn).__name__}",
            GRAD_FN_NAMES,
        ),
    ]
    a.backward()
    for name, tensor, stated in (("w", w, "3."), ("b", b, "1.")):
        claims.append(
            gradient_claim(
                f"a.backward() gives {name}.grad == {stated.rstrip('.')}",
                grad_of(tensor),
                neuron,
                _truth(),
                name,
                oracles=("sympy", "finite_difference"),
                expr=EXPR,
                stated=(stated,),
                scenario_id=scenario_id,
                seed=seed,
            )
        )
    return claims


def _twice() -> tuple[torch.Tensor, torch.Tensor]:
    w, b = _parameters()
    for _ in range(2):
        neuron(w, b).backward()
    return w, b


def verify_repeated_backward(seed: int) -> list[Claim]:
    """A second forward and backward doubles the gradients: 6 and 2."""
    scenario_id = "neuron/repeated_backward"
    w, b = _twice()
    claims = []
    for name, tensor, stated in (("w", w, "6."), ("b", b, "2.")):
        claims.append(
            gradient_claim(
                f"a second forward+backward doubles {name}.grad to {stated.rstrip('.')}",
                grad_of(tensor),
                neuron,
                _truth(),
                name,
                oracles=("sympy",),
                expr=EXPR,
                times=2,
                stated=(stated,),
                scenario_id=scenario_id,
                seed=seed,
            )
        )
    claims.extend(check_accumulation(neuron, _truth(), times=2, seed=seed).claims)
    return claims


def verify_sgd_step(seed: int) -> list[Claim]:
    """``SGD(lr=0.001).step()`` after two passes: w = 1.994, b = 0.998 (hand formula)."""
    scenario_id = "neuron/sgd_step"
    w, b = _twice()
    before = [p.detach().double().clone() for p in (w, b)]
    grads = [grad_of(p).detach().double().clone() for p in (w, b)]
    optimizer = torch.optim.SGD([w, b], lr=LR)
    optimizer.step()
    claims = []
    for name, tensor, start, grad, stated in zip(
        ("w", "b"), (w, b), before, grads, ("1.994", "0.998")
    ):
        claims.append(
            value_claim(
                f"SGD(lr={LR}).step() gives {name} == {stated} ({name} - lr*{name}.grad)",
                tensor.detach(),
                oracles=(("formula", start - LR * grad, None),),
                stated=(stated,),
                name=name,
                scenario_id=scenario_id,
                seed=seed,
            )
        )
    return claims


def verify_zero_grad(seed: int) -> list[Claim]:
    """``zero_grad()`` clears the gradients: None by default (set_to_none=True), zeros with
    set_to_none=False; the next backward is the single gradient again."""
    return list(check_zero_grad(neuron, _parameters(), seed=seed).claims)


_notebook = partial(notebook_scenario, topic=TOPIC, source="neuron")

SCENARIOS = (
    _notebook(
        "neuron/relu_backward",
        verify_relu_backward,
        ("sympy", "finite_difference", "stated"),
        "grad_fn",
        "kink-aware",
    ),
    _notebook(
        "neuron/repeated_backward",
        verify_repeated_backward,
        ("sympy", "formula", "stated"),
        "accumulation",
    ),
    _notebook("neuron/sgd_step", verify_sgd_step, ("formula", "stated"), "optimizer"),
    _notebook("neuron/zero_grad", verify_zero_grad, ("formula",), "zero_grad"),
)
