"""Property 5 (generalises neuron/sgd_step, optim/*, resnet18/sgd_momentum_steps): SGD and Adam
with random hyper-parameters follow the documented update formulas over several steps."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from gradcheck.optimizers import check_optimizer_steps
from gradcheck.strategies import adam_hyperparameters, sgd_hyperparameters


@given(
    hyper=sgd_hyperparameters(),
    seed=st.integers(0, 2**31),
    dtype=st.sampled_from((torch.float64, torch.float32)),
)
def test_sgd_follows_the_documented_update(hyper, seed, dtype) -> None:
    claims = check_optimizer_steps(torch.optim.SGD, hyper, steps=3, seed=seed, dtype=dtype)
    assert all(c.passed for c in claims), "\n".join(c.detail for c in claims if not c.passed)


@given(
    hyper=adam_hyperparameters(),
    seed=st.integers(0, 2**31),
    dtype=st.sampled_from((torch.float64, torch.float32)),
)
def test_adam_follows_the_documented_update(hyper, seed, dtype) -> None:
    claims = check_optimizer_steps(torch.optim.Adam, hyper, steps=3, seed=seed, dtype=dtype)
    assert all(c.passed for c in claims), "\n".join(c.detail for c in claims if not c.passed)
