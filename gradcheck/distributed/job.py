"""What every rank of a distributed check runs: the :class:`Job` (pickled into a file the ranks
load), the batch's shards, and the default training step and losses.

The step is the one a user writes. Each rank takes its contiguous shard of the global batch
(``batch / world_size`` samples), cuts it into ``accumulation_steps`` micro-batches and, for
each, runs ``loss = step(model, inputs, targets, context)`` and ``loss.backward()``, under
DDP's ``no_sync()`` (FSDP2: gradient sync off) for all but the last. The default step scales a
mean loss by ``1 / accumulation_steps`` (DDP averages over the ranks, so the result is the mean
over the global batch) and a sum loss by ``world_size`` (which undoes DDP's average).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

MEAN = "mean"
SUM = "sum"
REDUCTIONS = (MEAN, SUM)


@dataclass(frozen=True)
class StepContext:
    """What a training step is told about the micro-batch it runs: the rank, the number of
    ranks, which micro-batch of how many, the loss convention (``"mean"`` or ``"sum"`` over
    the global batch) and the loss function."""

    rank: int
    world_size: int
    micro_step: int
    accumulation_steps: int
    reduction: str
    loss: Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Job:
    """Everything a rank needs; ``make_model``, ``loss``, ``step`` and ``comm_hook`` are
    module-level callables (they travel by name)."""

    make_model: Callable[[], torch.nn.Module]
    state: dict[str, torch.Tensor]
    inputs: tuple[torch.Tensor, ...]
    targets: tuple[torch.Tensor, ...]
    loss: Callable[..., torch.Tensor]
    step: Callable[..., torch.Tensor]
    comm_hook: Callable[..., Any] | None
    comm_state: Any
    world_size: int
    backend: str
    strategy: str
    accumulation_steps: int
    reduction: str
    mode: str
    find_unused_parameters: bool
    seed: int
    timeout_s: float
    names: tuple[str, ...]


def micro_batches(
    tensors: Sequence[torch.Tensor], world_size: int, steps: int, rank: int
) -> list[tuple[torch.Tensor, ...]]:
    """Rank ``rank``'s ``steps`` micro-batches: its contiguous shard of dim 0 of every tensor,
    cut into equal parts (the batch size must be divisible by ``world_size * steps``)."""
    if not tensors:
        return [() for _ in range(steps)]
    size = tensors[0].shape[0] // (world_size * steps)
    return [
        tuple(t[(rank * steps + m) * size : (rank * steps + m + 1) * size] for t in tensors)
        for m in range(steps)
    ]


def half_mean_square(output: torch.Tensor) -> torch.Tensor:
    """The default mean loss: ``0.5 * ||output_i||^2`` averaged over the batch (dim 0)."""
    return 0.5 * output.pow(2).sum() / output.shape[0]


def half_sum_square(output: torch.Tensor) -> torch.Tensor:
    """The default sum loss: ``0.5 * ||output_i||^2`` summed over the batch (dim 0)."""
    return 0.5 * output.pow(2).sum()


def default_loss(reduction: str) -> Callable[..., torch.Tensor]:
    """The default loss for the convention ``reduction``."""
    return half_mean_square if reduction == MEAN else half_sum_square


def loss_scale(context: StepContext) -> float:
    """What the correct step multiplies a micro-batch's loss by so that the ranks' averaged
    gradient is the global batch's: ``1 / accumulation_steps`` for a mean loss, ``world_size``
    for a sum loss."""
    if context.reduction == MEAN:
        return 1.0 / context.accumulation_steps
    return float(context.world_size)


def default_step(
    model: torch.nn.Module,
    inputs: tuple[torch.Tensor, ...],
    targets: tuple[torch.Tensor, ...],
    context: StepContext,
) -> torch.Tensor:
    """The correct micro-step: ``loss(model(*inputs), *targets) * loss_scale(context)``."""
    return context.loss(model(*inputs), *targets) * loss_scale(context)
