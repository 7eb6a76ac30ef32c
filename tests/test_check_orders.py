"""Second order (double backward), forward mode as the subject, and backward's contract
(undefined output gradients, gradient metadata, batched backward), each with a planted bug that
fails and a correct function that passes, in real and complex."""

from __future__ import annotations

import json

import pytest
import torch

import gradcheck
from gradcheck.errors import InvalidArgument
from gradcheck.results import CheckResult


def x4() -> torch.Tensor:
    return torch.tensor([0.3, -1.2, 0.8, 2.1], dtype=torch.float64, requires_grad=True)


def z3() -> torch.Tensor:
    return torch.tensor([0.5 + 1j, -1 + 0.25j, 2 - 0.5j], dtype=torch.complex128)


class Cube(torch.autograd.Function):
    """x**3 with a differentiable backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * grad * x * x


class DetachedCube(Cube):
    """Right to first order; its backward detaches x, so its gradient is not differentiable."""

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * grad * x.detach() ** 2


class DataCube(Cube):
    """The same bug through ``.data``, with a gradient that still requires grad through grad."""

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * grad * x.data**2


class ComplexSquare(torch.autograd.Function):
    """z**2 with PyTorch's convention: grad * conj(2 z)."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return z * z

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return grad * (2 * z).conj()


class DetachedComplexSquare(ComplexSquare):
    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return grad * (2 * z.detach()).conj()


def parts(result: CheckResult) -> dict[str, str]:
    return {part.name.rsplit("[", 1)[-1].rstrip("]"): part.status for part in result.parts}


@pytest.mark.parametrize("fn", [Cube.apply, torch.sin, lambda x: (x.exp() * x).sum(), torch.tanh])
def test_second_order_passes_a_correct_gradient(fn) -> None:
    result = gradcheck.check_function(fn, x4(), order=2)
    assert result.status == "passed", result.message
    assert parts(result) == {"VJP": "passed", "VJP of VJP": "passed"}


@pytest.mark.parametrize("planted", [DetachedCube, DataCube])
def test_second_order_catches_a_backward_that_detaches_what_it_saved(planted) -> None:
    first = gradcheck.check_function(planted.apply, x4())
    assert first.status == "passed", first.message  # right to first order
    result = gradcheck.check_function(planted.apply, x4(), order=2)
    assert result.status == "failed"
    assert parts(result) == {"VJP": "passed", "VJP of VJP": "failed"}
    assert "VJP of VJP" in result.message
    assert "detaches what it saved" in result.message
    # torch agrees that the second derivative is wrong.
    assert not torch.autograd.gradgradcheck(planted.apply, x4(), raise_exception=False)


def test_a_linear_function_has_a_zero_second_derivative_and_passes() -> None:
    result = gradcheck.check_function(lambda x: 3 * x, x4(), order=2)
    assert result.status == "passed", result.message
    assert "hint" not in result.message


def test_second_order_in_complex() -> None:
    good = gradcheck.check_function(ComplexSquare.apply, z3(), order=2)
    assert good.status == "passed", good.message
    bad = gradcheck.check_function(DetachedComplexSquare.apply, z3(), order=2)
    assert parts(bad) == {"VJP": "passed", "VJP of VJP": "failed"}
    holomorphic = gradcheck.check_function(lambda z: torch.sin(z) * z.conj(), z3(), order=2)
    assert holomorphic.status == "passed", holomorphic.message


def test_third_order_composes_the_same_way() -> None:
    result = gradcheck.check_function(torch.sin, x4(), order=3)
    assert list(parts(result)) == ["VJP", "VJP of VJP", "VJP of VJP of VJP"]
    assert result.status == "passed", result.message


class JvpCube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)
        return x**3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * grad * x * x

    @staticmethod
    def jvp(ctx, tangent):
        (x,) = ctx.saved_tensors
        return 3 * tangent * x * x


class WrongJvpCube(JvpCube):
    @staticmethod
    def jvp(ctx, tangent):
        (x,) = ctx.saved_tensors
        return 3 * tangent * x * x * (1 + 1e-6)


def test_forward_mode_catches_a_wrong_jvp_even_when_backward_is_right() -> None:
    reverse = gradcheck.check_function(WrongJvpCube.apply, x4())
    assert reverse.status == "passed", reverse.message
    forward = gradcheck.check_function(WrongJvpCube.apply, x4(), mode="forward")
    assert forward.status == "failed"
    assert "Forward-mode mismatch (JVP)" in forward.message
    assert "forward mode" in forward.message
    both = gradcheck.check_function(WrongJvpCube.apply, x4(), mode="both")
    assert parts(both) == {"JVP": "failed", "VJP": "passed"}


def test_forward_mode_passes_a_right_jvp_and_torch_ops() -> None:
    for fn in (JvpCube.apply, torch.sin, torch.special.erf):
        result = gradcheck.check_function(fn, x4(), mode="both")
        assert result.status == "passed", result.message


def test_forward_mode_in_complex_catches_a_wrong_tangent() -> None:
    class WrongComplexJvp(ComplexSquare):
        @staticmethod
        def forward(ctx, z):
            ctx.save_for_backward(z)
            ctx.save_for_forward(z)
            return z * z

        @staticmethod
        def jvp(ctx, tangent):
            (z,) = ctx.saved_tensors
            return 2 * z.conj() * tangent  # forward mode takes no conj

    class RightComplexJvp(WrongComplexJvp):
        @staticmethod
        def jvp(ctx, tangent):
            (z,) = ctx.saved_tensors
            return 2 * z * tangent

    assert gradcheck.check_function(WrongComplexJvp.apply, z3(), mode="forward").status == "failed"
    right = gradcheck.check_function(RightComplexJvp.apply, z3(), mode="both")
    assert right.status == "passed", right.message


def test_forward_mode_without_a_jvp_is_inconclusive_not_passed() -> None:
    result = gradcheck.check_function(Cube.apply, x4(), mode="forward")
    assert result.status == "inconclusive"
    assert "jvp" in result.message


def test_order_two_in_both_modes_checks_four_derivatives() -> None:
    result = gradcheck.check_function(torch.sin, x4(), order=2, mode="both")
    assert parts(result) == {
        "JVP": "passed",
        "VJP": "passed",
        "JVP of VJP": "passed",
        "VJP of VJP": "passed",
    }
    detached = gradcheck.check_function(DetachedCube.apply, x4(), order=2, mode="both")
    assert parts(detached)["VJP of VJP"] == "failed"
    assert parts(detached)["JVP"] == "inconclusive"  # no jvp staticmethod


def test_a_result_with_parts_round_trips_through_json() -> None:
    result = gradcheck.check_function(DetachedCube.apply, x4(), order=2)
    again = CheckResult.from_dict(json.loads(result.to_json()))
    assert again == result
    assert again.parts[1].status == "failed"


def test_raise_for_failure_raises_on_a_failed_part() -> None:
    with pytest.raises(gradcheck.GradientMismatch, match="VJP of VJP"):
        gradcheck.assert_gradients_correct(DetachedCube.apply, x4(), order=2)


@pytest.mark.parametrize(
    ("keyword", "value", "match"),
    [
        ("order", 0, r"order=0.*integer >= 1"),
        ("order", 4, r"order=4.*up to order 3"),
        ("order", 1.5, r"order=1\.5"),
        ("mode", "backward", r"mode='backward'.*'reverse' or 'forward' or 'both'"),
        ("batched", "yes", r"batched='yes'.*True or False"),
    ],
)
def test_bad_order_mode_or_batched_is_refused(keyword: str, value: object, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        gradcheck.check_function(torch.sin, x4(), **{keyword: value})


def test_forward_mode_cannot_be_judged_by_the_forward_oracle() -> None:
    with pytest.raises(InvalidArgument, match="cannot judge itself"):
        gradcheck.check_function(torch.sin, x4(), mode="forward", oracle="forward")


class TwoOutputs(torch.autograd.Function):
    """sin and cos of x; sees None for an unused output (materialize_grads off)."""

    @staticmethod
    def forward(ctx, x):
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x)
        return x.sin(), x.cos()

    @staticmethod
    def backward(ctx, a, b):
        (x,) = ctx.saved_tensors
        grad = torch.zeros_like(x)
        if a is not None:
            grad = grad + a * x.cos()
        if b is not None:
            grad = grad - b * x.sin()
        return grad


class UndefinedAsOnes(TwoOutputs):
    @staticmethod
    def backward(ctx, a, b):
        (x,) = ctx.saved_tensors
        a = torch.zeros_like(x) if a is None else a
        b = torch.ones_like(x) if b is None else b  # planted: None is not zero
        return a * x.cos() - b * x.sin()


class UndefinedCrashes(TwoOutputs):
    @staticmethod
    def backward(ctx, a, b):
        (x,) = ctx.saved_tensors
        return a * x.cos() - b * x.sin()


def test_undefined_output_gradients_must_count_as_zeros() -> None:
    assert gradcheck.check_function(TwoOutputs.apply, x4()).status == "passed"
    ones = gradcheck.check_function(UndefinedAsOnes.apply, x4())
    assert ones.status == "failed"
    assert "output[1]'s gradient undefined (None)" in ones.message
    crash = gradcheck.check_function(UndefinedCrashes.apply, x4())
    assert crash.status == "failed"
    assert "raised TypeError" in crash.message
    assert not torch.autograd.gradcheck(UndefinedAsOnes.apply, x4(), raise_exception=False)


class NotVmappable(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, grad):
        return torch.tensor(grad.tolist(), dtype=grad.dtype) * 2  # leaves the vmap


def test_batched_backward_is_checked_when_asked() -> None:
    plain = gradcheck.check_function(NotVmappable.apply, x4())
    assert plain.status == "passed", plain.message
    batched = gradcheck.check_function(NotVmappable.apply, x4(), batched=True)
    assert batched.status == "failed"
    assert "under vmap" in batched.message
    assert "batched=True" in batched.reproduce
    assert not torch.autograd.gradcheck(
        NotVmappable.apply, x4(), check_batched_grad=True, raise_exception=False
    )
    for fn in (torch.sin, lambda x: torch.outer(x, x), Cube.apply):
        result = gradcheck.check_function(fn, x4(), batched=True)
        assert result.status == "passed", result.message
    complex_result = gradcheck.check_function(torch.exp, z3(), batched=True)
    assert complex_result.status == "passed", complex_result.message


def test_gradient_metadata_problems_are_named() -> None:
    from gradcheck.backward_contract import metadata_problems

    x = torch.zeros(3, dtype=torch.float64)
    problems = metadata_problems([x], [torch.zeros(3, dtype=torch.float32)], ["x"])
    assert problems == ("the gradient of x has dtype torch.float32, but x has torch.float64",)
    assert metadata_problems([x], [torch.zeros(1, 3, dtype=torch.float64)], ["x"])
    assert metadata_problems([x], [torch.zeros(3, dtype=torch.float64)], ["x"]) == ()


def test_sympy_judges_the_second_derivative_exactly() -> None:
    x = torch.tensor([0.3, -1.2, 0.8], dtype=torch.float64)
    good = gradcheck.check_function(Cube.apply, x, oracle="sympy", expr="x**3", order=2)
    assert good.status == "passed", good.message
    assert {part.oracle for part in good.parts} == {"sympy"}
    bad = gradcheck.check_function(DetachedCube.apply, x, oracle="sympy", expr="x**3", order=2)
    assert parts(bad) == {"VJP": "passed", "VJP of VJP": "failed"}
    w = torch.tensor([2.0, 0.5, -1.0], dtype=torch.float64, requires_grad=True)
    two = gradcheck.check_function(
        lambda x, w: torch.sin(x * w),
        (x.requires_grad_(), w),
        oracle="sympy",
        expr="sin(x*w)",
        order=3,
    )
    assert two.status == "passed", two.message


def test_sympy_at_second_order_refuses_a_broadcast_with_the_fix() -> None:
    x = torch.tensor([0.3, -1.2, 0.8], dtype=torch.float64, requires_grad=True)
    w = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    with pytest.raises(InvalidArgument, match=r"elementwise.*finite_difference"):
        gradcheck.check_function(
            lambda x, w: torch.sin(x * w), (x, w), oracle="sympy", expr="sin(x*w)", order=2
        )


def test_second_order_is_calm_on_cancellation_at_large_inputs() -> None:
    # autograd's second derivative of logcumsumexp at 1e4 is a 2e-12 residue of exp(x - lse)
    # (its exact value is 0); the tolerance alone (1e-12) would call it a failure.
    x = torch.full((5, 5), 1e4, dtype=torch.float64)
    result = gradcheck.check_function(lambda x: torch.logcumsumexp(x, 0), x, order=2)
    assert result.status == "passed", result.message
    # ... and a 1e-6 error of a second derivative is still caught at that scale.
    big = torch.linspace(1e3, 2e3, 6, dtype=torch.float64)

    class Subtle(Cube):
        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return 3 * grad * x * x + 1e-6 * 3 * grad * (x * x - x.detach() * x.detach())

    assert gradcheck.check_function(Subtle.apply, big, order=2).status == "failed"


class NoDoubleBackward(torch.autograd.Function):
    """A backward that calls a Function with no backward of its own."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.exp()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return _ForwardOnly.apply(grad * x.exp())


class _ForwardOnly(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value):
        return value.clone()


def test_a_second_derivative_autograd_cannot_compute_is_inconclusive_with_the_reason() -> None:
    result = gradcheck.check_function(NoDoubleBackward.apply, x4(), order=2)
    assert parts(result) == {"VJP": "passed", "VJP of VJP": "inconclusive"}
    assert result.status == "inconclusive"
    assert "cannot differentiate the gradient" in result.message


class ComplexTwo(torch.autograd.Function):
    """z * w and conj(z) (complex); sees None for an unused output."""

    @staticmethod
    def forward(ctx, z):
        ctx.set_materialize_grads(False)
        return z * (1 + 2j), z.conj()

    @staticmethod
    def backward(ctx, a, b):
        grad = None
        if a is not None:
            grad = a * (1 - 2j)
        if b is not None:
            grad = b.conj() if grad is None else grad + b.conj()
        return grad


class ComplexUndefinedAsOnes(ComplexTwo):
    @staticmethod
    def backward(ctx, a, b):
        b = torch.ones_like(a) if b is None else b  # planted: None is not zero
        a = torch.zeros_like(b) if a is None else a
        return a * (1 - 2j) + b.conj()


class ComplexNotVmappable(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        return z * (1 + 2j)

    @staticmethod
    def backward(ctx, grad):
        return torch.tensor(grad.tolist(), dtype=grad.dtype) * (1 - 2j)


def test_complex_backward_contract_planted_and_correct() -> None:
    assert gradcheck.check_function(ComplexTwo.apply, z3()).status == "passed"
    ones = gradcheck.check_function(ComplexUndefinedAsOnes.apply, z3())
    assert ones.status == "failed" and "undefined (None)" in ones.message
    assert gradcheck.check_function(ComplexNotVmappable.apply, z3()).status == "passed"
    batched = gradcheck.check_function(ComplexNotVmappable.apply, z3(), batched=True)
    assert batched.status == "failed" and "under vmap" in batched.message


def test_a_sparse_input_is_refused_at_second_order_with_the_fix() -> None:
    sparse = torch.eye(3, dtype=torch.float64).to_sparse()
    with pytest.raises(InvalidArgument, match=r"sparse inputs\[0\].*inputs\[0\]\.to_dense\(\)"):
        gradcheck.check_function(lambda s: torch.sparse.sum(s * 2.0), sparse, order=2)
