"""``Q = 3a^3 - b^2`` (seeds/003) and the linear model with MSE (seeds/004).

Claims: with a=(2,3), b=(6,4) and the external gradient ones, ``a.grad == 9a^2`` and
``b.grad == -2b`` (the notebook checks it with ``==``: exact in float32 here). For ``Q = w*x + b``
with w=2, b=6, x=[1,2,3] against y = 4x + 1, the MSE gives ``w.grad = 4/3`` (printed 1.3333) and
``b.grad = 2``; the manual update ``w = w - lr*w.grad`` with lr=0.1 gives 1.8667 and 5.8 but makes
``w`` a non-leaf (grad_fn SubBackward0): on the next backward its ``.grad`` stays None (torch
warns) and the gradient silently lands on the old leaf instead. The correct idiom, an in-place
update under ``torch.no_grad()``, keeps a leaf whose next gradient is right.
"""

from __future__ import annotations

import warnings
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
from gradcheck.torch_versions import GRAD_FN_NAMES, versioned_claim

X = (1.0, 2.0, 3.0)
LR = 0.1
RESIDUAL = "(4*x + 1 - (w*x + b))**2"


def cubic_minus_square(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Q = 3*a**3 - b**2``."""
    return 3 * a**3 - b**2


def squared_residual(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(y - (w*x + b))**2`` with y = 4x + 1, elementwise (the MSE is its mean)."""
    return (4 * x + 1 - (w * x + b)) ** 2


def mse(y: torch.Tensor, yhat: torch.Tensor) -> torch.Tensor:
    """The notebook's ``((y - yhat)**2).mean()``."""
    return ((y - yhat) ** 2).mean()


def verify_cubic_minus_square(seed: int) -> list[Claim]:
    """``a.grad == 9a^2`` and ``b.grad == -2b`` (SymPy), and the notebook's ``==`` holds."""
    scenario_id = "polynomial/cubic_minus_square"
    a = torch.tensor((2.0, 3.0), requires_grad=True)
    b = torch.tensor((6.0, 4.0), requires_grad=True)
    q = cubic_minus_square(a, b)
    q.backward(gradient=torch.tensor([1.0, 1.0]))
    truth = (a.detach().double(), b.detach().double())
    ones = torch.ones(2, dtype=torch.float64)
    claims = [
        gradient_claim(
            f"{name}.grad == {formula} = {values}",
            grad_of(tensor),
            cubic_minus_square,
            truth,
            name,
            oracles=("sympy", "finite_difference"),
            expr="3*a**3 - b**2",
            cotangents=ones,
            stated=stated,
            scenario_id=scenario_id,
            seed=seed,
        )
        for name, tensor, formula, values, stated in (
            ("a", a, "9*a**2", "[36, 81]", ("36.", "81.")),
            ("b", b, "-2*b", "[-12, -8]", ("-12.", "-8.")),
        )
    ]
    a_equal, b_equal = torch.eq(9 * a**2, grad_of(a)), torch.eq(-2 * b, grad_of(b))
    exact = bool(a_equal.all()) and bool(b_equal.all())
    claims.append(
        fact(
            "the notebook's own check 9*a**2 == a.grad and -2*b == b.grad is all True",
            exact,
            f"9*a**2 == a.grad: {a_equal.tolist()}, -2*b == b.grad: {b_equal.tolist()}",
        )
    )
    return claims


def _linear_parameters() -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.tensor([2.0], requires_grad=True),
        torch.tensor([6.0], requires_grad=True),
    )


def _x() -> torch.Tensor:
    return torch.tensor(X)


def _mse_gradient_claims(
    w: torch.Tensor,
    b: torch.Tensor,
    at: tuple[float, float],
    scenario_id: str,
    seed: int,
    stated: dict[str, tuple[str, ...]] | None = None,
    label: str = "",
) -> list[Claim]:
    """``w.grad`` and ``b.grad`` against SymPy/finite differences of the MSE at ``at``."""
    truth = (
        torch.tensor([at[0]], dtype=torch.float64),
        torch.tensor([at[1]], dtype=torch.float64),
        _x().double(),
    )
    third = torch.full((3,), 1 / 3, dtype=torch.float64)
    return [
        gradient_claim(
            f"{label}{name}.grad is the MSE gradient"
            + (f" {stated[name][0].rstrip('.')}" if stated else ""),
            grad_of(tensor),
            squared_residual,
            truth,
            name,
            oracles=("sympy", "finite_difference"),
            expr=RESIDUAL,
            cotangents=third,
            stated=None if stated is None else stated[name],
            scenario_id=scenario_id,
            seed=seed,
        )
        for name, tensor in (("w", w), ("b", b))
    ]


def verify_mse_gradients(seed: int) -> list[Claim]:
    """Q = w*x + b = [8, 10, 12], y = [5, 9, 13], ``w.grad = 4/3``, ``b.grad = 2``."""
    scenario_id = "linear/mse_gradients"
    w, b = _linear_parameters()
    x = _x()
    q = w * x + b
    y = 4 * x + 1
    loss = mse(y, q)
    loss.backward()
    claims = [
        versioned_claim(
            "Q = w*x + b has grad_fn AddBackward0",
            type(q.grad_fn).__name__ == "AddBackward0",
            f"Q.grad_fn = {type(q.grad_fn).__name__}",
            GRAD_FN_NAMES,
        ),
        value_claim(
            "Q = w*x + b is [8, 10, 12]",
            q.detach(),
            oracles=(("formula", [2 * v + 6 for v in X], None),),
            stated=("8.", "10.", "12."),
            name="Q",
            scenario_id=scenario_id,
            seed=seed,
        ),
        value_claim(
            "y = 4x + 1 is [5, 9, 13]",
            y,
            oracles=(("formula", [4 * v + 1 for v in X], None),),
            stated=("5.", "9.", "13."),
            name="y",
            scenario_id=scenario_id,
            seed=seed,
        ),
    ]
    claims += _mse_gradient_claims(
        w, b, (2.0, 6.0), scenario_id, seed, stated={"w": ("1.3333",), "b": ("2.",)}
    )
    return claims


def verify_manual_update_pitfall(seed: int) -> list[Claim]:
    """``w = w - lr*w.grad`` gives 1.8667 and 5.8 but a non-leaf whose ``.grad`` stays None."""
    scenario_id = "linear/manual_update_pitfall"
    w0, b0 = _linear_parameters()
    x = _x()
    mse(4 * x + 1, w0 * x + b0).backward()
    g_w, g_b = grad_of(w0).clone(), grad_of(b0).clone()
    w = w0 - LR * grad_of(w0)
    b = b0 - LR * grad_of(b0)
    claims = [
        value_claim(
            f"{name} - lr*{name}.grad with lr={LR} gives {stated}",
            tensor.detach(),
            oracles=(("formula", start - LR * grad.double(), None),),
            stated=(stated,),
            name=name,
            scenario_id=scenario_id,
            seed=seed,
        )
        for name, tensor, start, grad, stated in (
            ("w", w, 2.0, g_w, "1.8667"),
            ("b", b, 6.0, g_b, "5.8000"),
        )
    ]
    names = [type(t.grad_fn).__name__ for t in (w, b)]
    claims += [
        fact(
            "the updated w and b are non-leaf tensors",
            not w.is_leaf and not b.is_leaf,
            f"is_leaf {[w.is_leaf, b.is_leaf]}",
        ),
        versioned_claim(
            "the updated w and b have grad_fn SubBackward0",
            names == ["SubBackward0", "SubBackward0"],
            f"grad_fn {names}",
            GRAD_FN_NAMES,
        ),
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mse(4 * x + 1, w * x + b).backward()
        grads = [w.grad, b.grad]
    warned = any("not a leaf Tensor" in str(item.message) for item in caught)
    claims.append(
        fact(
            "on the next backward their .grad is None, and torch warns about non-leaf .grad",
            grads == [None, None] and warned,
            f".grad = {grads}; UserWarning about a non-leaf .grad: {warned}",
        )
    )
    moved = w0.grad is not None and not torch.equal(w0.grad, g_w)
    claims.append(
        fact(
            "the new gradient silently accumulates into the old leaves instead",
            moved,
            f"old leaf w0.grad went from {g_w.tolist()} to "
            f"{None if w0.grad is None else w0.grad.tolist()}",
        )
    )
    return claims


def verify_update_under_no_grad(seed: int) -> list[Claim]:
    """The correct idiom: ``w -= lr*w.grad`` under ``no_grad`` keeps a leaf with a right grad."""
    scenario_id = "linear/update_under_no_grad"
    w, b = _linear_parameters()
    x = _x()
    mse(4 * x + 1, w * x + b).backward()
    with torch.no_grad():
        w -= LR * grad_of(w)
        b -= LR * grad_of(b)
    claims = [
        fact(
            "after the in-place update under no_grad, w and b are still leaves requiring grad",
            w.is_leaf
            and b.is_leaf
            and w.requires_grad
            and b.requires_grad
            and w.grad_fn is None
            and b.grad_fn is None,
            f"is_leaf {[w.is_leaf, b.is_leaf]}, requires_grad "
            f"{[w.requires_grad, b.requires_grad]}, grad_fn {[w.grad_fn, b.grad_fn]}",
        )
    ]
    w.grad, b.grad = None, None
    mse(4 * x + 1, w * x + b).backward()
    at = (float(w.detach()), float(b.detach()))
    claims += _mse_gradient_claims(w, b, at, scenario_id, seed, label="at the updated (w, b): ")
    return claims


_polynomial = partial(
    notebook_scenario, topic="Q = 3a^3 - b^2 with an external gradient", source="torch_autograd"
)
_linear = partial(
    notebook_scenario,
    topic="Linear model w*x + b with MSE, and the manual update",
    source="linear",
)

SCENARIOS = (
    _polynomial(
        "polynomial/cubic_minus_square",
        verify_cubic_minus_square,
        ("sympy", "finite_difference", "stated"),
        "external-gradient",
    ),
    _linear(
        "linear/mse_gradients",
        verify_mse_gradients,
        ("sympy", "finite_difference", "formula", "stated"),
        "loss",
    ),
    _linear(
        "linear/manual_update_pitfall",
        verify_manual_update_pitfall,
        ("formula", "stated"),
        "pitfall",
        "leaf",
    ),
    _linear(
        "linear/update_under_no_grad",
        verify_update_under_no_grad,
        ("sympy", "finite_difference"),
        "leaf",
        "no_grad",
    ),
)
