"""Complex inputs and outputs, judged in PyTorch's convention: ``z.grad`` is
``dL/d(real) + i dL/d(imag)`` (the conjugate Wirtinger derivative), checked through the real
and the imaginary part of every element."""

from __future__ import annotations

import pytest
import torch

import gradcheck
from gradcheck.errors import InvalidArgument

COMPLEX = [torch.complex64, torch.complex128]


def z4(dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    return torch.randn(4, dtype=dtype, generator=generator).requires_grad_()


class MissingConj(torch.autograd.Function):
    """``z * w`` whose backward forgets to conjugate ``w``: right along the real direction
    when ``w`` is real, wrong along the imaginary one."""

    @staticmethod
    def forward(ctx, z, w):
        ctx.save_for_backward(w)
        return z * w

    @staticmethod
    def backward(ctx, grad):
        (w,) = ctx.saved_tensors
        return grad * w, None


class RightConj(MissingConj):
    @staticmethod
    def backward(ctx, grad):
        (w,) = ctx.saved_tensors
        return grad * w.conj(), None


CORRECT = {
    "sin (holomorphic)": torch.sin,
    "exp sum (holomorphic, scalar output)": lambda z: z.exp().sum(),
    "abs (real output, not holomorphic)": torch.abs,
    "angle (real output, not holomorphic)": torch.angle,
    "real": torch.real,
    "z * conj(z)": lambda z: z * z.conj(),
    "conj then square": lambda z: z.conj() ** 2,
    "fft": torch.fft.fft,
}


@pytest.mark.parametrize("dtype", COMPLEX)
@pytest.mark.parametrize("name", sorted(CORRECT))
def test_a_correct_complex_gradient_passes(name: str, dtype: torch.dtype) -> None:
    result = gradcheck.check_function(CORRECT[name], z4(dtype), name=name)
    assert result.status == "passed", result.message
    assert result.checked == 8  # both parts of 4 elements
    assert result.dtype == str(dtype).removeprefix("torch.")


@pytest.mark.parametrize("dtype", COMPLEX)
def test_a_backward_missing_conj_fails_along_the_imaginary_part(dtype: torch.dtype) -> None:
    w = torch.tensor([1 + 2j, -0.5 + 1j, 2 - 1j, 0.3 + 0.7j], dtype=dtype)
    result = gradcheck.check_function(lambda z: MissingConj.apply(z, w), z4(dtype), name="mul")
    assert result.status == "failed", result.message
    assert result.worst is not None and result.worst.input in ("z.real", "z.imag")
    assert "z.real[" in result.message or "z.imag[" in result.message
    fixed = gradcheck.check_function(lambda z: RightConj.apply(z, w), z4(dtype), name="mul")
    assert fixed.status == "passed", fixed.message
    assert not torch.autograd.gradcheck(
        lambda z: MissingConj.apply(z, w.to(torch.complex128)),
        z4().detach().requires_grad_(),
        raise_exception=False,
    )


def test_a_forgotten_conj_of_a_real_factor_is_harmless_and_passes() -> None:
    # w real: grad * w == grad * conj(w); the forgotten conj is harmless and must pass.
    w = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.complex128)
    result = gradcheck.check_function(lambda z: MissingConj.apply(z, w), z4())
    assert result.status == "passed", result.message


def test_mixed_real_and_complex_inputs_name_each_part() -> None:
    x = torch.tensor([0.5, -1.5], dtype=torch.float64, requires_grad=True)
    z = torch.tensor([1 + 1j, 2 - 0.5j], dtype=torch.complex128, requires_grad=True)

    class WrongScale(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, z):
            ctx.save_for_backward(x, z)
            return x * z

        @staticmethod
        def backward(ctx, grad):
            x, z = ctx.saved_tensors
            return (grad * z.conj()).real, grad * x * (1 + 1e-5)

    good = gradcheck.check_function(lambda x, z: x * z, (x, z))
    assert good.status == "passed", good.message
    assert good.checked == 6
    bad = gradcheck.check_function(WrongScale.apply, (x, z))
    assert bad.status == "failed"
    assert bad.worst is not None and bad.worst.input.startswith("z.")
    assert any("complex128" in note.reason for note in bad.left_out)


def test_a_complex_cotangent_is_contracted_as_torch_backward_does() -> None:
    z = z4()
    v = torch.tensor([1 - 1j, 0.5j, 2.0, -1 + 0.25j], dtype=torch.complex128)
    fn = lambda z: torch.sin(z) * z  # noqa: E731
    fn(z).backward(v)
    oracle = gradcheck.oracle_gradient(fn, z, cotangents=v)
    (estimate,) = oracle.values
    torch.testing.assert_close(estimate, torch.view_as_real(z.grad), rtol=1e-9, atol=1e-9)
    result = gradcheck.check_function(fn, z, cotangents=v)
    assert result.status == "passed", result.message


def test_the_callers_complex_tensor_is_left_as_it_was() -> None:
    z = z4()
    before = z.detach().clone()
    gradcheck.check_function(torch.sin, z)
    assert z.dtype == torch.complex128 and z.requires_grad and z.grad is None
    assert torch.equal(z.detach(), before)


def test_abs_at_zero_is_a_kink_not_a_failure() -> None:
    z = torch.tensor([0j, 1 + 1j], dtype=torch.complex128, requires_grad=True)
    result = gradcheck.check_function(torch.abs, z)
    assert result.status != "failed", result.message


def test_the_forward_oracle_judges_complex_inputs_too() -> None:
    result = gradcheck.check_function(torch.sin, z4(), oracle="forward")
    assert result.status == "passed", result.message


def test_sympy_refuses_complex_inputs_with_the_fix() -> None:
    with pytest.raises(InvalidArgument, match=r"complex inputs.*finite_difference"):
        gradcheck.check_function(torch.sin, z4(), oracle="sympy", expr="sin(z)")


def test_a_complex_partial_view_keeps_its_layout() -> None:
    # as_strided reads the storage beyond the view's own elements (OpInfo's
    # as_strided.partial_views): the pairs must view the whole storage, as real inputs do.
    base = torch.randn(12, dtype=torch.complex128, generator=torch.Generator().manual_seed(1))
    z = base[4:8]

    def fn(z: torch.Tensor) -> torch.Tensor:
        return torch.as_strided(z, (2, 2), (1, 2), 6) * (1 + 1j)

    result = gradcheck.check_function(fn, z)
    assert result.status == "passed", result.message
