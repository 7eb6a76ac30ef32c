"""The semantics checks hold for correct code and catch planted violations of each rule."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

from gradcheck import semantics
from gradcheck.errors import BackwardError, InvalidArgument, SemanticsViolation


def square_mean(x: torch.Tensor) -> torch.Tensor:
    return (2 * (x + 2) ** 2).mean()


def square(x: torch.Tensor) -> torch.Tensor:
    return 2 * (x + 2) ** 2


def affine(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return ((w * x + b - 1) ** 2).sum()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.tensor([1.3505, 0.9042, -0.7476], dtype=torch.float64)


CHECKS = (
    semantics.check_accumulation,
    semantics.check_zero_grad,
    semantics.check_tracking_off,
    semantics.check_vector_backward,
    semantics.check_retain_graph,
)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("fn", (square_mean, square), ids=("scalar", "vector"))
def test_every_rule_holds_for_correct_code(check, fn, x) -> None:
    result = check(fn, x)
    assert result.passed, result.message
    assert result.claims and all(c.passed for c in result.claims)
    assert result.raise_for_failure() is result


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_checks_leave_the_callers_tensors_alone(check) -> None:
    w = torch.tensor([2.0], requires_grad=True)
    b = torch.tensor([6.0], requires_grad=True)
    data = torch.tensor([1.0, 2.0, 3.0])
    w.grad = torch.tensor([5.0])
    before = [t.clone() for t in (w, b, data)]
    grad_mode, rng = torch.is_grad_enabled(), torch.get_rng_state()
    assert check(affine, (w, b, data)).passed
    assert [torch.equal(t, s) for t, s in zip((w, b, data), before)] == [True] * 3
    assert torch.equal(w.grad, torch.tensor([5.0])) and b.grad is None
    assert w.requires_grad and b.requires_grad and not data.requires_grad
    assert torch.is_grad_enabled() == grad_mode and torch.equal(torch.get_rng_state(), rng)


def test_only_inputs_that_require_grad_are_differentiated() -> None:
    w = torch.tensor([2.0], requires_grad=True)
    b = torch.tensor([6.0])
    data = torch.tensor([1.0, 2.0, 3.0])
    result = semantics.check_accumulation(affine, (w, b, data))
    assert result.passed
    names = {check.name for claim in result.claims for check in claim.checks}
    assert names == {"w.grad"}


def test_two_losses_add() -> None:
    x = torch.linspace(-1, 1, 5, dtype=torch.float64)
    result = semantics.check_accumulation(square_mean, x, other=lambda x: torch.sin(x).sum())
    assert result.passed
    assert any("adds their gradients" in c.statement for c in result.claims)


# -- planted violations ----------------------------------------------------------------------


class _Square(torch.autograd.Function):
    """x**2 with its input saved; subclasses plant a wrong backward."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x * x

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.save_for_backward(inputs[0])


class DriftingBackward(_Square):
    """x**2 whose backward grows by 1e-3 on every call: accumulation is not k x single."""

    calls = itertools.count()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * 2 * x * (1 + 1e-3 * next(DriftingBackward.calls))


class IgnoresCotangent(_Square):
    """x**2 whose backward ignores the incoming gradient: right only for v = 1."""

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return 2 * x


def test_planted_drifting_backward_breaks_accumulation(x) -> None:
    result = semantics.check_accumulation(lambda t: DriftingBackward.apply(t).sum(), x)
    assert not result.passed
    failed = [c.statement for c in result.claims if not c.passed]
    assert "2 backward pass(es) accumulate 2 x the single gradient" in failed
    with pytest.raises(SemanticsViolation, match="does not hold"):
        result.raise_for_failure()


def test_planted_ignored_cotangent_breaks_vector_backward(x) -> None:
    v = torch.tensor([0.1, 1.0, 0.001], dtype=torch.float64)
    result = semantics.check_vector_backward(IgnoresCotangent.apply, x, cotangents=v)
    assert not result.passed
    claim = next(c for c in result.claims if "v^T J" in c.statement)
    assert not claim.passed and "Value mismatch: x.grad" in claim.detail
    # with v = ones the bug is invisible: the check needs a non-trivial v
    ones = torch.ones(3, dtype=torch.float64)
    assert semantics.check_vector_backward(IgnoresCotangent.apply, x, cotangents=ones).passed


def test_planted_grad_mode_override_breaks_tracking_off(x) -> None:
    def sneaky(t: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():  # records a graph even under no_grad
            return t * 3

    result = semantics.check_tracking_off(sneaky, x, methods=("no_grad",))
    assert not result.passed
    assert [c.statement for c in result.claims if not c.passed] == ["no_grad: no graph is recorded"]


def test_planted_mode_dependent_values_break_tracking_off(x) -> None:
    def drifts(t: torch.Tensor) -> torch.Tensor:
        return t * (3.0 if torch.is_grad_enabled() else 3.0000001)

    result = semantics.check_tracking_off(drifts, x, methods=("no_grad", "inference_mode"))
    failed = [c.statement for c in result.claims if not c.passed]
    assert failed == [
        "no_grad: values equal the tracked computation bit for bit",
        "inference_mode: values equal the tracked computation bit for bit",
    ]


def test_planted_no_op_zero_grad_is_caught(x, monkeypatch) -> None:
    monkeypatch.setattr(torch.optim.SGD, "zero_grad", lambda self, set_to_none=True: None)
    result = semantics.check_zero_grad(square_mean, x)
    assert not result.passed
    assert all(not c.passed for c in result.claims)


def test_retain_graph_distinguishes_graphs_that_saved_nothing(x) -> None:
    saved_nothing = semantics.check_retain_graph(lambda t: (t + 2).sum(), x)
    assert saved_nothing.passed
    assert "saved nothing" in saved_nothing.claims[0].statement
    saved = semantics.check_retain_graph(square_mean, x)
    assert "raises" in saved.claims[0].statement and saved.passed


# -- explained errors --------------------------------------------------------------------------


def test_missing_call_parentheses_is_explained() -> None:
    pred, labels = torch.rand(1, 4, requires_grad=True), torch.rand(1, 4)
    loss = (pred - labels).sum
    text = semantics.explain_backward_failure(loss)
    assert "Tensor.sum" in text and "parentheses are missing" in text and ".sum()" in text
    with pytest.raises(InvalidArgument, match="parentheses are missing"):
        semantics.backward(loss)


@pytest.mark.parametrize(
    ("make_loss", "fragment"),
    (
        (lambda: (torch.ones(3) * 2).sum(), "requires_grad=True"),
        (lambda: torch.ones(3, requires_grad=True) * 2, "gradient=v"),
    ),
    ids=("no-requires-grad", "non-scalar"),
)
def test_backward_errors_are_explained_and_chained(make_loss, fragment) -> None:
    with pytest.raises(BackwardError, match=fragment) as caught:
        semantics.backward(make_loss())
    assert isinstance(caught.value, RuntimeError)
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_non_tensor_loss_is_explained() -> None:
    loss = torch.ones(2, requires_grad=True).sum().item()
    assert "float" in semantics.explain_backward_failure(loss)
    assert semantics.explain_backward_failure(torch.ones(2, requires_grad=True).sum()) is None


def test_bad_arguments_are_refused_with_the_fix(x) -> None:
    with pytest.raises(InvalidArgument, match="times must be an integer >= 1"):
        semantics.check_accumulation(square_mean, x, times=0)
    with pytest.raises(InvalidArgument, match="each method must be one of"):
        semantics.check_tracking_off(square_mean, x, methods=("freeze",))
    with pytest.raises(InvalidArgument, match="shape"):
        semantics.check_vector_backward(square, x, cotangents=torch.ones(2))
    with pytest.raises(InvalidArgument, match="fn must be callable"):
        semantics.check_zero_grad(square_mean(x), x)
    with pytest.raises(InvalidArgument, match="one floating-point tensor"):
        semantics.check_retain_graph(lambda t: (t, t), x)
