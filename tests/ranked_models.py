"""Module-level models, losses, steps and comm hooks for the distributed checks' tests: they
travel to the spawned ranks by pickling, so they live here, not inside the tests. Each planted
bug is a mistake people make in distributed training."""

from __future__ import annotations

import os
import signal
import time

import torch
import torch.distributed as dist
from torch import nn


def rank() -> int:
    """This process's rank (0 outside a process group: the parent's reference runs)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def mlp() -> nn.Module:
    """A small float32 MLP: 6 -> 8 -> 3 with tanh."""
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def mlp_float64() -> nn.Module:
    """The MLP in float64."""
    return mlp().double()


def batch(samples: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded batch of inputs (samples x 6) and regression targets (samples x 3)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(samples, 6, generator=generator), torch.randn(
        samples, 3, generator=generator
    )


def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the batch (mean over all elements)."""
    return torch.nn.functional.mse_loss(output, target)


def summed_squares(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error summed over the batch."""
    return (output - target).pow(2).sum()


def step_without_dividing(model, inputs, targets, context):  # type: ignore[no-untyped-def]
    """Planted bug: accumulation that forgets to divide each micro-batch's loss by the number
    of micro-batches (the gradient is accumulation_steps x too large)."""
    return context.loss(model(*inputs), *targets)


def sum_all_reduce_hook(state, bucket):  # type: ignore[no-untyped-def]
    """Planted bug: a comm hook that all-reduces without dividing by the world size."""
    work = dist.all_reduce(bucket.buffer(), async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def local_only_hook(state, bucket):  # type: ignore[no-untyped-def]
    """Planted bug: a comm hook that never communicates (each rank keeps its own average)."""
    future: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    future.set_result(bucket.buffer() / dist.get_world_size())
    return future


class SkipsOnRankOne(nn.Module):
    """Planted bug: rank 1's forward leaves the second layer out of the graph."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(6, 6)
        self.second = nn.Linear(6, 3)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.first(x))
        if rank() == 1:
            return self.head(hidden)
        return self.head(hidden) + self.second(hidden)


class DiesOnRankOne(nn.Module):
    """A rank killed mid-step: rank 1 sends itself SIGKILL in its forward."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if rank() == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.layer(x)


class HangsOnRankOne(nn.Module):
    """A hung rank: rank 1 sleeps in its forward far longer than any test waits."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if rank() == 1:
            time.sleep(600)
        return self.layer(x)


class RaisesOnRankOne(nn.Module):
    """A rank that raises in its forward."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if rank() == 1:
            raise ValueError("planted: rank 1 cannot run this forward")
        return self.layer(x)
