"""Module-level models and batches for the catalog's distributed scenario and the README's
example: spawned ranks import ``make_model`` by name, so it cannot live inside a function."""

from __future__ import annotations

import torch


def small_mlp() -> torch.nn.Module:
    """A float32 MLP, 6 -> 8 -> 3 with tanh (91 parameters)."""
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def regression_batch(samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded float32 batch for :func:`small_mlp`: inputs (samples x 6), targets (x 3)."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(samples, 6, generator=generator)
    return inputs, torch.randn(samples, 3, generator=generator)


def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``torch.nn.functional.mse_loss`` (the mean over the batch)."""
    return torch.nn.functional.mse_loss(output, target)
