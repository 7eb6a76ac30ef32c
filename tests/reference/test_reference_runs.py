"""The runs of a reference check: modules with the same parameters get parameter rows and the
reference runs with the implementation's weights; modules that differ are refused; the
caller's module, tensors, RNG state and grad mode are left as they were."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from reference_kernels import BlockedLinear, ChunkedLinear, doubled, linear, linear_inputs, randn

from gradcheck import InvalidArgument, check_against_reference

BF16 = torch.bfloat16


class KernelLinear(torch.nn.Module):
    """``nn.Linear``'s parameters (``weight``, ``bias``) around a custom kernel."""

    def __init__(self, kernel: type[torch.autograd.Function], seed: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.weight = torch.nn.Parameter(randn(8, 16, seed=seed))
        self.bias = torch.nn.Parameter(randn(8, seed=seed + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.kernel.apply(x, self.weight) + self.bias


def reference_linear() -> torch.nn.Linear:
    """An ``nn.Linear(16, 8)`` with weights of its own, unlike any KernelLinear's."""
    with torch.random.fork_rng():
        torch.manual_seed(99)
        return torch.nn.Linear(16, 8)


def test_modules_with_the_same_parameters_get_parameter_rows_with_the_kernels_weights():
    reference = reference_linear()
    own = reference.weight.detach().clone()
    x = randn(4096, 16, seed=30)
    result = check_against_reference(KernelLinear(BlockedLinear, 31), reference, x, dtype=BF16)
    # With its own weights the reference's output would be off by O(1): it ran with the kernel's.
    assert result.passed, result.message
    assert [(row.name, row.kind) for row in result.rows] == [
        ("input", "input"),
        ("weight", "parameter"),
        ("bias", "parameter"),
        ("output", "output"),
    ]
    assert torch.equal(reference.weight, own)


def test_a_planted_weight_gradient_bug_fails_its_parameter_row_only():
    x = randn(4096, 16, seed=30)
    result = check_against_reference(
        KernelLinear(ChunkedLinear, 31), reference_linear(), x, dtype=BF16
    )
    assert [row.name for row in result.failed_rows] == ["weight"]
    assert result.row("weight").ratio > 3


@pytest.mark.parametrize(
    ("reference", "named"),
    [
        (lambda: torch.nn.Sequential(torch.nn.Linear(16, 8)), "only in fn: bias, weight"),
        (lambda: torch.nn.Linear(16, 8, bias=False), "only in fn: bias"),
        (lambda: torch.nn.Linear(8, 16), "shapes differ: bias, weight"),
    ],
    ids=["nested", "no-bias", "transposed"],
)
def test_modules_whose_parameters_differ_are_refused(reference, named):
    fn, x = KernelLinear(BlockedLinear, 31), randn(4, 16, seed=32)
    with pytest.raises(InvalidArgument) as raised:
        check_against_reference(fn, reference(), x)
    message = str(raised.value)
    assert named in message
    assert "pass the reference as a function of the inputs" in message


def test_the_callers_module_tensors_rng_and_grad_mode_are_untouched():
    module = KernelLinear(BlockedLinear, 33).train()
    state = {name: t.clone() for name, t in module.state_dict().items()}
    x = randn(256, 16, seed=34).requires_grad_()
    kept_x = x.detach().clone()
    weight, bias = (p.detach().to(BF16) for p in (module.weight, module.bias))

    def drawing(inputs: torch.Tensor) -> torch.Tensor:
        """The reference (the module's weights, rounded as the check rounds them), drawing
        from every global generator and adding nothing."""
        noise = 0 * torch.rand(()) + 0 * random.random() + 0 * np.random.rand()
        out = torch.nn.functional.linear(inputs, weight.to(inputs.dtype), bias.to(inputs.dtype))
        return out + noise

    torch_rng, python_rng, numpy_rng = (
        torch.get_rng_state(),
        random.getstate(),
        np.random.get_state(),
    )
    with torch.no_grad():
        result = check_against_reference(module, drawing, x, dtype=BF16)
        assert not torch.is_grad_enabled()
    assert result.passed, result.message
    assert [row.name for row in result.rows] == ["input", "output"]  # one side is a function
    assert torch.equal(torch.get_rng_state(), torch_rng)
    assert random.getstate() == python_rng
    assert np.array_equal(np.random.get_state()[1], numpy_rng[1])
    assert module.training and x.dtype == torch.float32 and x.requires_grad
    assert x.grad is None and torch.equal(x.detach(), kept_x)
    for name, tensor in module.state_dict().items():
        assert tensor.dtype == torch.float32 and torch.equal(tensor, state[name])
    assert all(p.grad is None for p in module.parameters())


def test_only_the_inputs_that_require_grad_get_gradient_rows():
    x, w = linear_inputs(BF16, batch=256)
    result = check_against_reference(
        BlockedLinear.apply, linear, (x, w.requires_grad_()), verify_reference=False
    )
    assert [row.name for row in result.rows] == ["w", "output"]


def test_the_golden_value_is_taken_at_the_inputs_rounded_to_the_dtype():
    x = randn(64, seed=35)  # float32, checked in bfloat16
    result = check_against_reference(doubled, doubled, x, dtype=BF16)
    # Doubling is exact in bfloat16: against float64 at the rounded inputs it is off by nothing.
    assert result.passed
    assert all(row.baseline_error == 0 and row.candidate_error == 0 for row in result.rows)


def test_an_output_shaped_unlike_the_references_fails_its_row_instead_of_raising():
    def first_half(x: torch.Tensor) -> torch.Tensor:
        return 2 * x[:4]

    result = check_against_reference(first_half, doubled, randn(8, seed=36))
    assert result.status == "failed"
    assert "has shape (4,), but the reference's has shape (8,)" in result.row("output").note
    assert result.row("x").status == "failed"  # no cotangent reached it


def test_a_module_reference_check_that_leaves_one_tensor_undecided_unjudges_only_that_row(
    monkeypatch,
) -> None:
    from types import SimpleNamespace

    rows = [
        SimpleNamespace(name="input", status="passed", note=""),
        SimpleNamespace(name="0.weight", status="kink-affected", note="every direction crossed"),
        SimpleNamespace(name="0.bias", status="passed", note=""),
    ]
    undecided = SimpleNamespace(status="incomplete", message="check_module 'Sequential'", rows=rows)
    monkeypatch.setattr("gradcheck.reference.check.check_module", lambda *a, **k: undecided)
    model = torch.nn.Sequential(torch.nn.Linear(6, 3), torch.nn.Tanh())
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    result = check_against_reference(model, model, x)
    assert result.reference_check == "inconclusive" and result.status == "incomplete"
    assert [row.name for row in result.inconclusive_rows] == ["0.weight"]
    assert "kink-affected: every direction crossed" in result.row("0.weight").note
    assert result.row("0.bias").passed and result.row("input").passed
