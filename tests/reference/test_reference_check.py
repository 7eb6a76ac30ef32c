"""check_against_reference: planted low-precision bugs caught, correct kernels passed (also
side by side with torch.testing.assert_close), the rules before the gate (ill-conditioned,
wrong reference), the argument checks and a CUDA run."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from reference_kernels import (
    BesselVariance,
    BlockedLinear,
    ChunkedLinear,
    NanScale,
    RacyLinear,
    SoftmaxMissingTerm,
    cancelling_linear_inputs,
    linear,
    linear_inputs,
    randn,
    softmax,
    tripled,
    variance,
)

from gradcheck import InvalidArgument, check_against_reference

BF16 = torch.bfloat16


def assert_close_verdict(actual: torch.Tensor, expected: torch.Tensor) -> bool:
    """torch.testing.assert_close at its default tolerances for the dtype: True when it passes."""
    try:
        torch.testing.assert_close(actual, expected)
    except AssertionError:
        return False
    return True


def last_gradients(
    kernel: Callable[..., torch.Tensor],
    eager: Callable[..., torch.Tensor],
    inputs: tuple[torch.Tensor, ...],
    v: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The last input's gradient for cotangent ``v``, from ``kernel`` and from ``eager``, on
    the same tensors: what a test with assert_close compares."""
    grads = []
    for call in (kernel, eager):
        leaves = [t.clone().requires_grad_() for t in inputs]
        call(*leaves).backward(v)
        grads.append(leaves[-1].grad)
    return grads[0], grads[1]


# Planted bugs: each must fail, on the row the bug is in and only there.


def test_bf16_chunk_accumulated_weight_gradient_fails_several_times_the_eager_error():
    x, w = linear_inputs(BF16)
    result = check_against_reference(ChunkedLinear.apply, linear, (x, w))
    assert not result.passed and result.status == "failed"
    assert result.reference_check == "passed"
    row = result.row("w")
    assert row.status == "failed" and row.ratio > 3, result.table()
    assert row.candidate_error > row.allowed
    assert [r.name for r in result.failed_rows] == ["w"]
    assert "w (d/d input)" in result.message


def test_softmax_backward_missing_its_sum_term_fails_the_input_gradient():
    x = randn(4, 32, seed=6, dtype=BF16)
    result = check_against_reference(SoftmaxMissingTerm.apply, softmax, x)
    assert result.status == "failed"
    assert result.row("x").status == "failed" and result.row("x").ratio > 3
    assert result.row("output").passed  # the forward is right


def test_nan_in_the_backward_fails_with_the_non_finite_note():
    x = randn(64, seed=7, dtype=BF16)
    x[5] = 0
    result = check_against_reference(NanScale.apply, tripled, x)
    row = result.row("x")
    assert row.status == "failed"
    assert "1 non-finite value(s) in the gradient of x" in row.note
    assert "first at index [5]" in row.note
    # Only the NaN fails it: the finite elements are within the gate.
    assert (
        row.candidate_error <= row.allowed and row.candidate_elementwise <= row.allowed_elementwise
    )
    assert result.row("output").passed


@pytest.mark.parametrize("deterministic", [False, True])
def test_nondeterministic_backward_is_reported_and_fails_only_when_determinism_is_asked(
    deterministic,
):
    x, w = linear_inputs(torch.float32, batch=1024)
    result = check_against_reference(RacyLinear.apply, linear, (x, w), deterministic=deterministic)
    assert result.nondeterministic
    row = result.row("w")
    assert row.spread > 0 and "nondeterministic: 2 runs differ" in row.note
    assert result.row("x").spread == 0 and result.row("output").spread == 0
    assert row.candidate_error <= row.allowed  # accurate, just not reproducible
    if deterministic:
        assert result.status == "failed" and row.status == "failed"
        assert "(deterministic=True)" in row.note
    else:
        assert result.passed and row.passed


# Correct kernels pass.


def test_bf16_linear_accumulating_in_float32_blocks_in_another_order_passes():
    x, w = linear_inputs(BF16)
    result = check_against_reference(BlockedLinear.apply, linear, (x, w))
    assert result.passed, result.message
    assert all(row.ratio <= 3 for row in result.rows)
    assert "3 tensors within 3 x the reference's own error" in result.message


# Side by side with torch.testing.assert_close (candidate gradient vs eager low-precision).


def test_a_variance_backward_dividing_by_n_minus_1_passes_assert_close_and_fails_the_gate():
    x = randn(8, 2048, seed=8)
    v = randn(8, seed=9)
    candidate, eager = last_gradients(BesselVariance.apply, variance, (x,), v)
    # The gradients are ~2e-3, so the 1/2047 relative error sits far under atol=1e-5.
    assert assert_close_verdict(candidate, eager)
    result = check_against_reference(BesselVariance.apply, variance, x, cotangents=v)
    row = result.row("x")
    assert result.status == "failed" and row.status == "failed"
    assert row.candidate_error == pytest.approx(1 / 2047, rel=0.01)
    assert row.ratio > 1000


def test_a_correct_cancelling_float32_gradient_fails_assert_close_and_passes_the_gate():
    x, w, v = cancelling_linear_inputs()
    candidate, eager = last_gradients(BlockedLinear.apply, linear, (x, w), v)
    # Kernel and eager differ by up to 7e-3 (entries up to ~175), beyond rtol=1.3e-6, atol=1e-5
    assert not assert_close_verdict(candidate, eager)
    result = check_against_reference(BlockedLinear.apply, linear, (x, w), cotangents=v)
    # ... but each is as far from float64 as the other.
    assert result.passed, result.message
    row = result.row("w")
    assert row.baseline_error > 1e-6 and row.ratio <= 3


# The rules before the gate.


def shifted(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``x * w`` with ``x`` moved out to 256 and back: bfloat16 keeps no digit of ``x``."""
    return (x + 256 - 256) * w


def shifted_kernel(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The same product, distributed: ``(x + 256) * w - 256 * w``."""
    return (x + 256) * w - 256 * w


def test_a_reference_without_a_correct_bf16_digit_makes_those_rows_inconclusive():
    x, w = randn(64, seed=10, dtype=BF16), randn(64, seed=11, dtype=BF16)
    result = check_against_reference(shifted_kernel, shifted, (x, w))
    assert result.status == "incomplete" and not result.passed
    assert not result.failed_rows
    assert {row.name for row in result.inconclusive_rows} == {"w", "output"}
    for row in result.inconclusive_rows:
        assert row.baseline_error >= 10**-0.5
        assert row.note.startswith("ill-conditioned in bfloat16")
    assert result.row("x").passed  # d/dx = w has every digit
    assert "2 of 3 tensors not judged" in result.message


def test_a_wrong_reference_fails_the_check_and_no_gradient_is_judged_against_it():
    x = randn(4, 32, seed=6, dtype=BF16)
    result = check_against_reference(softmax, SoftmaxMissingTerm.apply, x)
    assert result.status == "failed" and result.reference_check == "failed"
    assert "check_function 'SoftmaxMissingTerm.apply'" in result.reference_note
    assert result.row("x").status == "inconclusive"
    assert result.row("x").note.startswith("not judged: the reference's own float64 gradient")
    assert result.row("output").passed  # the forward is still judged
    assert result.message.startswith("Wrong reference: ")


def test_verify_reference_false_skips_the_check_and_judges_every_row():
    x = randn(4, 32, seed=6, dtype=BF16)
    result = check_against_reference(softmax, SoftmaxMissingTerm.apply, x, verify_reference=False)
    assert result.reference_check == "skipped"
    assert "trusted unchecked" in result.reference_note
    assert result.row("x").status == "failed"  # the right softmax disagrees with the wrong one


# Arguments.


@pytest.mark.parametrize(
    ("keywords", "named"),
    [
        ({"multiplier": 0.5}, ["multiplier=0.5", ">= 1", "multiplier=3"]),
        ({"multiplier": True}, ["multiplier=True", ">= 1"]),
        ({"repeats": 0}, ["repeats=0", "integer >= 1", "repeats=2"]),
        ({"dtype": torch.int64}, ["dtype=torch.int64", "floating-point torch.dtype"]),
        ({"module_mode": "test"}, ["module_mode='test'", "'eval' or 'train'"]),
    ],
)
def test_bad_arguments_raise_a_message_that_names_the_problem_and_the_fix(keywords, named):
    x = randn(8, seed=12)
    with pytest.raises(InvalidArgument) as raised:
        check_against_reference(tripled, tripled, x, **keywords)
    for part in named:
        assert part in str(raised.value)


# CUDA.


@pytest.mark.cuda
def test_on_cuda_the_planted_bug_fails_and_the_correct_kernel_passes():
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available on this machine (torch.cuda.is_available() is False)")
    x, w = linear_inputs(BF16)
    planted = check_against_reference(ChunkedLinear.apply, linear, (x, w), device="cuda")
    assert planted.device.startswith("cuda")
    assert planted.row("w").status == "failed" and planted.row("w").ratio > 3, planted.table()
    correct = check_against_reference(BlockedLinear.apply, linear, (x.cuda(), w.cuda()))
    assert correct.device.startswith("cuda")
    assert correct.passed, correct.message
