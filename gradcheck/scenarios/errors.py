"""The ``backward()`` errors the notebooks run into, as first-class scenarios (seeds/002, 003).

Each scenario proves two things: torch raises the error the notebook shows (matched on the
stable fragment of its message, the same from torch 1.x to 2.14), and gradcheck explains it in
plain words with the fix (:func:`gradcheck.semantics.explain_backward_failure`; the wrapper
:func:`gradcheck.semantics.backward` raises the explanation).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from gradcheck.errors import BackwardError, InvalidArgument
from gradcheck.results import Claim
from gradcheck.scenarios.base import Scenario, fact, notebook_scenario
from gradcheck.semantics import (
    NO_GRAD_FRAGMENT,
    NON_SCALAR_FRAGMENT,
    backward,
    check_retain_graph,
    explain_backward_failure,
    raises,
)
from gradcheck.torch_versions import error_claim

TOPIC = "backward() errors, raised by torch and explained by gradcheck"


def _x(seed: int, requires_grad: bool) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(3, generator=generator).requires_grad_(requires_grad)


def _square_mean(x: torch.Tensor) -> torch.Tensor:
    y = x + 2
    return (y * y * 2).mean()


def _square(x: torch.Tensor) -> torch.Tensor:
    y = x + 2
    return y * y * 2


def _error_claims(
    make_loss: Callable[[], object],
    error: type[BaseException],
    fragment: str,
    explained: str,
    wrapped: type[BaseException],
) -> list[Claim]:
    """torch raises ``error`` with ``fragment``; the explanation mentions ``explained``; the
    wrapper raises ``wrapped``."""
    loss = make_loss()
    outcome = raises(lambda: loss.backward(), error, fragment)  # type: ignore[attr-defined]
    explanation = explain_backward_failure(make_loss()) or ""
    wrapper = raises(lambda: backward(make_loss()), wrapped, explained)
    return [
        error_claim(f"loss.backward() raises {error.__name__}: {fragment!r}", outcome),
        fact(
            f"gradcheck explains it ({explained!r})",
            explained in explanation,
            explanation or "no explanation",
        ),
        fact(
            f"gradcheck.semantics.backward raises {wrapped.__name__} with the explanation",
            wrapper.matched,
            wrapper.what,
        ),
    ]


def verify_no_requires_grad(seed: int) -> list[Claim]:
    """Backward on a graph where nothing requires grad."""
    return _error_claims(
        lambda: _square_mean(_x(seed, False)),
        RuntimeError,
        f"element 0 of tensors {NO_GRAD_FRAGMENT}",
        "requires_grad=True",
        BackwardError,
    )


def verify_non_scalar_backward(seed: int) -> list[Claim]:
    """``z.backward()`` on a vector without ``gradient``."""
    return _error_claims(
        lambda: _square(_x(seed, True)),
        RuntimeError,
        NON_SCALAR_FRAGMENT,
        "gradient=v",
        BackwardError,
    )


def verify_second_backward(seed: int) -> list[Claim]:
    """A second backward without ``retain_graph=True`` raises; with it, the gradient doubles."""
    x = _x(seed, True)
    loss = _square_mean(x)
    loss.backward()
    explanation = explain_backward_failure(loss, _second_error(loss)) or ""
    claims = [
        fact(
            "gradcheck explains the freed graph (retain_graph=True)",
            "retain_graph=True" in explanation,
            explanation or "no explanation",
        )
    ]
    claims.extend(check_retain_graph(_square_mean, x.detach(), seed=seed).claims)
    return claims


def _second_error(loss: torch.Tensor) -> BaseException | None:
    try:
        loss.backward()
    except RuntimeError as error:
        return error
    return None


def verify_missing_call_parentheses(seed: int) -> list[Claim]:
    """``loss = (pred - labels).sum`` without ``()``: ``loss.backward()`` is an AttributeError
    on a method, detected and explained."""
    generator = torch.Generator().manual_seed(seed)
    pred = torch.rand(1, 10, generator=generator).requires_grad_(True)
    labels = torch.rand(1, 10, generator=generator)

    def make_loss() -> object:
        return (pred - labels).sum  # the notebook's missing call, on purpose

    claims = _error_claims(
        make_loss, AttributeError, "has no attribute 'backward'", "sum()", InvalidArgument
    )
    fixed = (pred - labels).sum()
    fixed.backward()
    claims.append(
        fact(
            "with the call, loss.backward() fills pred.grad with ones",
            pred.grad is not None and bool((pred.grad == 1).all()),
            f"pred.grad = {None if pred.grad is None else pred.grad.flatten()[:3].tolist()}...",
        )
    )
    return claims


def _error(name: str, verify: Callable[[int], list[Claim]], source: str) -> Scenario:
    return notebook_scenario(
        f"errors/{name}", verify, ("observed",), "error", topic=TOPIC, source=source
    )


SCENARIOS = (
    _error("no_requires_grad", verify_no_requires_grad, "basics"),
    _error("non_scalar_backward", verify_non_scalar_backward, "basics"),
    _error("second_backward", verify_second_backward, "basics"),
    _error("missing_call_parentheses", verify_missing_call_parentheses, "torch_autograd"),
)
