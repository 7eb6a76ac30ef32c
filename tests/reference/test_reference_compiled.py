"""check_compiled: a compiled MLP passes (inductor once, aot_eager elsewhere: inductor compiles
C++ and takes seconds on the CPU), torch's planted compiler bug fails, bad backends are
refused."""

from __future__ import annotations

import time

import pytest
import torch
from reference_kernels import randn

from gradcheck import InvalidArgument, check_compiled

BF16 = torch.bfloat16


def mlp() -> torch.nn.Module:
    """A 16-32-4 MLP with a LayerNorm (whose reductions inductor fuses and reorders) and GELU,
    with seeded weights (the global RNG is not moved)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Linear(16, 32), torch.nn.LayerNorm(32), torch.nn.GELU(), torch.nn.Linear(32, 4)
        )


def test_an_mlp_compiled_by_inductor_passes_in_bfloat16():
    # ~11 s on 2 shared CPU cores with a cold inductor cache (compile included), ~3 s warm.
    started = time.perf_counter()
    result = check_compiled(mlp(), randn(64, 16, seed=20), dtype=BF16, backend="inductor")
    took = time.perf_counter() - started
    assert result.passed, result.message
    assert result.compiled == "inductor" and result.dtype == "bfloat16"
    assert [row.name for row in result.rows if row.kind == "parameter"] == [
        f"{layer}.{name}" for layer in (0, 1, 3) for name in ("weight", "bias")
    ]
    assert result.nondeterministic is False
    assert 0 < result.first_call_s < took


def test_an_mlp_compiled_by_aot_eager_passes_in_train_mode_and_leaves_the_module_alone():
    module = mlp().eval()
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    result = check_compiled(
        module, randn(64, 16, seed=21), dtype=BF16, backend="aot_eager", module_mode="train"
    )
    assert result.passed, result.message
    assert result.reference_check == "passed"
    assert not module.training and next(module.parameters()).dtype == torch.float32
    for name, p in module.named_parameters():
        assert torch.equal(p, before[name]) and p.grad is None


def relu_twice(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x) * 2


def test_torchs_planted_relu_miscompile_fails_and_eager_compiling_passes():
    x = randn(32, seed=22)
    planted = check_compiled(relu_twice, x, backend="relu_accuracy_error_TESTING_ONLY")
    assert planted.status == "failed"
    assert {row.name for row in planted.failed_rows} == {"x", "output"}
    assert "relu_accuracy_error_TESTING_ONLY" in planted.reproduce
    control = check_compiled(relu_twice, x, backend="eager")
    assert control.passed, control.message


def test_an_unknown_backend_is_refused_with_the_known_ones_listed():
    with pytest.raises(InvalidArgument) as raised:
        check_compiled(relu_twice, randn(4, seed=23), backend="inductr")
    message = str(raised.value)
    assert "backend='inductr'" in message and "'inductor'" in message
