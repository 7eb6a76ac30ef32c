"""check_function end to end: correct gradients pass, planted bugs fail at the right element,
kinks are marked, and the caller's state is left alone."""

from __future__ import annotations

import pytest
import torch

import gradcheck
from gradcheck.scenarios import planted

ORACLES = ("finite_difference", "sympy", "forward")


def _random(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("oracle", ORACLES)
def test_sin_passes_with_every_oracle(oracle: str) -> None:
    x = _random(4, 3)
    result = gradcheck.check_function(
        torch.sin, x, oracle=oracle, expr="sin(x)" if oracle == "sympy" else None
    )
    assert result.passed, result.message
    assert result.status == "passed" and result.checked == 12 and result.failed == 0
    assert result.max_rel_error < 1e-9


@pytest.mark.parametrize("oracle", ORACLES)
def test_backward_off_by_one_ppm_fails(oracle: str) -> None:
    """A relative error of 1e-6, below torch.autograd.gradcheck's rtol=1e-3, is caught."""
    x = _random(6, seed=3)
    result = gradcheck.check_function(
        planted.SinOffByOnePpm.apply, x, oracle=oracle, expr="sin(x)" if oracle == "sympy" else None
    )
    assert result.status == "failed", result.message
    assert result.max_rel_error == pytest.approx(1e-6, rel=1e-3)
    assert result.message.startswith("Gradient mismatch: check_function 'SinOffByOnePpm.apply'")


def test_peer_misses_what_gradcheck_catches() -> None:
    """torch.autograd.gradcheck at its defaults accepts the 1e-6 bug."""
    x = _random(6, seed=3).requires_grad_()
    assert torch.autograd.gradcheck(planted.SinOffByOnePpm.apply, (x,))
    assert not gradcheck.check_function(planted.SinOffByOnePpm.apply, x).passed


@pytest.mark.parametrize("oracle", ORACLES)
def test_wrong_element_is_the_worst_index(oracle: str) -> None:
    x = _random(2, 3, seed=5)
    result = gradcheck.check_function(
        planted.SquareWrongAtOneIndex.apply,
        x,
        oracle=oracle,
        expr="x**2" if oracle == "sympy" else None,
    )
    assert result.status == "failed" and result.failed == 1
    assert result.worst is not None and result.worst.index == (1, 0)  # flat index 3 of (2, 3)
    assert "worst at x[1, 0]" in result.message


@pytest.mark.parametrize(
    ("fn", "expr", "kink_interval"),
    [(torch.relu, "Max(0, x)", (0.0, 1.0)), (torch.abs, "Abs(x)", (-1.0, 1.0))],
)
@pytest.mark.parametrize("oracle", ("finite_difference", "sympy"))
def test_kinks_pass_and_are_marked(fn, expr, kink_interval, oracle: str) -> None:
    x = torch.tensor([-1.0, 0.0, 2.0, 0.0, 0.5], dtype=torch.float64)
    result = gradcheck.check_function(
        fn, x, oracle=oracle, expr=expr if oracle == "sympy" else None
    )
    assert result.passed, result.message
    assert [note.where for note in result.kinks] == ["x[1]", "x[3]"]
    assert all("on a kink" in note.reason for note in result.kinks)


@pytest.mark.parametrize("oracle", ("finite_difference", "sympy"))
def test_relu_backward_two_at_kink_fails(oracle: str) -> None:
    x = torch.tensor([-1.0, 0.0, 0.5], dtype=torch.float64)
    result = gradcheck.check_function(
        planted.ReluTwoAtKink.apply,
        x,
        oracle=oracle,
        expr="Max(0, x)" if oracle == "sympy" else None,
    )
    assert result.status == "failed" and result.failed == 1
    assert result.worst is not None and result.worst.index == (1,)
    assert "(a kink)" in result.message
    worst = result.worst
    assert worst is not None and worst.lower is not None and worst.upper is not None
    assert not worst.lower <= worst.autograd <= worst.upper


def test_vector_output_checks_the_full_vjp_not_the_sum() -> None:
    """A backward that is right for v = ones but wrong elsewhere is caught by random v."""

    class SwapsGradients(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return torch.stack([x[0] + x[1], x[0] + x[1]])

        @staticmethod
        def backward(ctx, grad):  # correct only when grad[0] == grad[1]
            return torch.stack([grad[0] + grad[0], grad[1] + grad[1]])

    x = _random(2, seed=1)
    result = gradcheck.check_function(SwapsGradients.apply, x)
    assert result.status == "failed"
    assert "v^T d out / d x" in result.message


def test_tuple_outputs_and_multiple_inputs() -> None:
    def fn(a, b):
        return a * b, torch.exp(a) - b**2

    a, b = _random(3, seed=1), _random(3, seed=2)
    result = gradcheck.check_function(fn, (a, b), oracle="sympy", expr=("a*b", "exp(a) - b**2"))
    assert result.passed, result.message
    assert result.checked == 6


def test_only_inputs_that_require_grad_are_differentiated() -> None:
    a = _random(3, seed=1).requires_grad_()
    b = _random(3, seed=2)  # constant
    result = gradcheck.check_function(lambda a, b: a * torch.sin(b), (a, b))
    assert result.passed and result.checked == 3


def test_large_inputs_use_seeded_random_directions() -> None:
    x = _random(20, 20, seed=4)
    result = gradcheck.check_function(torch.tanh, x)
    assert result.passed and result.mode == "directional" and result.checked == 8
    bug = gradcheck.check_function(planted.SinOffByOnePpm.apply, x)
    assert bug.status == "failed" and bug.worst is not None and bug.worst.direction is not None
    assert "direction" in bug.message


def test_float32_is_judged_against_float64_with_its_own_tolerance() -> None:
    x = _random(5, seed=6, dtype=torch.float32)
    result = gradcheck.check_function(torch.exp, x)
    assert result.passed and result.dtype == "float32"
    assert result.tolerance == gradcheck.TOLERANCES[(torch.float32, "finite_difference")]


def test_forward_oracle_without_jvp_is_inconclusive_not_failed() -> None:
    class NoJvp(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            return grad * 2

    result = gradcheck.check_function(NoJvp.apply, _random(3), oracle="forward")
    assert result.status == "inconclusive" and not result.passed
    assert "forward-mode AD is not available" in result.inconclusive[0].reason
    with pytest.raises(gradcheck.InconclusiveCheck):
        result.raise_for_failure()


def test_randomness_inside_fn_is_frozen_and_caller_rng_untouched() -> None:
    x = _random(6, seed=8)
    before = torch.get_rng_state()
    result = gradcheck.check_function(lambda t: torch.nn.functional.dropout(t, 0.5) * t, x)
    assert result.passed, result.message
    assert torch.equal(torch.get_rng_state(), before)


def test_a_cpu_check_reseeds_no_cuda_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.manual_seed would reseed every CUDA device's generator, which the check's fork of
    the RNG does not restore: on a GPU machine the caller's CUDA random stream would change."""

    def forbidden(seed: int) -> None:
        raise AssertionError("a CPU check reseeded the CUDA generators")

    monkeypatch.setattr(torch.cuda, "manual_seed_all", forbidden)
    monkeypatch.setattr(torch.cuda, "manual_seed", forbidden)
    x = _random(6, seed=8)
    result = gradcheck.check_function(lambda t: torch.nn.functional.dropout(t, 0.5) * t, x)
    assert result.passed, result.message
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Dropout(0.5))
    assert gradcheck.check_module(model, _random(2, 3), mode="train").passed


def test_caller_state_is_left_alone() -> None:
    x = _random(4, seed=9).requires_grad_()
    scale = _random(4, seed=10)
    x_before, scale_before = x.detach().clone(), scale.clone()

    def writes_into_its_constant(t, s):
        s.add_(1.0)
        return t.sin() * s

    torch.set_grad_enabled(False)
    try:
        result = gradcheck.check_function(writes_into_its_constant, (x, scale))
        assert not torch.is_grad_enabled()
    finally:
        torch.set_grad_enabled(True)
    assert result.passed, result.message
    assert torch.equal(x.detach(), x_before) and x.requires_grad and x.grad is None
    assert torch.equal(scale, scale_before) and not scale.requires_grad


def test_result_is_reproducible_from_its_seed() -> None:
    x = _random(3, 3, seed=10)
    first = gradcheck.check_function(torch.sin, x, seed=42)
    second = gradcheck.check_function(torch.sin, x, seed=42)
    assert first.seed == 42 and first.max_abs_error == second.max_abs_error
    assert "seed=42" in first.reproduce


def test_mismatch_message_has_the_design_note_shape() -> None:
    def my_square(x):
        return planted.SquareWrongAtOneIndex.apply(x)

    x = _random(16, seed=11)
    message = gradcheck.check_function(my_square, x, seed=1234).message
    lines = message.splitlines()
    assert (
        lines[0] == "Gradient mismatch: check_function 'my_square' (float64, cpu), v^T d out / d x"
    )
    assert lines[1].startswith("  worst at x[3] = ") and "finite_difference" in lines[1]
    assert "|diff|" in lines[2] and "1 of 16 elements fail" in lines[2]
    assert lines[3] == (
        "  reproduce: gradcheck.check_function(my_square, x, oracle='finite_difference', seed=1234)"
    )


def test_assert_gradients_correct_raises_assertion_error() -> None:
    x = _random(3, seed=12)
    assert gradcheck.assert_gradients_correct(torch.sin, x).passed
    with pytest.raises(AssertionError, match="Gradient mismatch"):
        gradcheck.assert_gradients_correct(planted.ExpSquareMissingChainRule.apply, x)
