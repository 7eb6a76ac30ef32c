"""The single-process side of a distributed check, in the parent: the gradients of the whole
batch's loss in float64 (the golden value) and what a correct step costs in the step's own
dtype (the yardstick), from copies of the model with the initial weights the ranks also get.

The yardstick is computed as the ranks compute it: each rank's gradient, shard by shard and
micro-batch by micro-batch with the correct scaling, divided by the number of ranks and summed
in rank order. Its rounding is then the rounding the split itself costs (a sum of per-shard
gradients in float32 is not the whole batch's float32 gradient: per-shard terms can be larger
than their sum), so a correct step sits near ratio 1. When the gradients travel in a lower
dtype than the model's (``fp16_compress_hook``, ``bf16_compress_hook``), each rank's gradient
is cast to the communication dtype, divided there, summed in that dtype and cast back, as the
hooks do.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gradcheck.distributed.job import StepContext, default_step, micro_batches

Gradients = dict[str, torch.Tensor | None]


@dataclass(frozen=True)
class Batch:
    """The global batch: the model's inputs and the loss's targets, the loss, its convention
    and the mode the model runs in."""

    inputs: tuple[torch.Tensor, ...]
    targets: tuple[torch.Tensor, ...]
    loss: Callable[..., torch.Tensor]
    reduction: str
    mode: str


def as_dtype(tensors: tuple[torch.Tensor, ...], dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Floating tensors cast to ``dtype``; the others (integer labels) as they are."""
    return tuple(t.to(dtype) if t.is_floating_point() else t for t in tensors)


def model_copy(model: torch.nn.Module, dtype: torch.dtype | None, mode: str) -> torch.nn.Module:
    """A deep copy of ``model`` (cast to ``dtype`` when given) in ``mode``."""
    copied = copy.deepcopy(model)
    if dtype is not None:
        copied = copied.to(dtype)
    return copied.train(mode == "train")


def whole_batch(
    model: torch.nn.Module, batch: Batch, names: tuple[str, ...], dtype: torch.dtype | None
) -> Gradients:
    """The gradients of ``loss(model(*inputs), *targets)`` on the whole batch, in ``dtype``
    (None: the model's and inputs' own dtypes)."""
    copied = model_copy(model, dtype, batch.mode)
    inputs, targets = batch.inputs, batch.targets
    if dtype is not None:
        inputs, targets = as_dtype(inputs, dtype), as_dtype(targets, dtype)
    batch.loss(copied(*inputs), *targets).backward()
    return _gradients(copied, names)


def sharded(
    model: torch.nn.Module,
    batch: Batch,
    names: tuple[str, ...],
    world_size: int,
    accumulation_steps: int,
    wire: torch.dtype,
) -> Gradients:
    """What a correct step's gradients are when the ranks' local gradients travel in ``wire``
    (the model's own dtype: no cast): each rank's accumulated gradient (in the model's dtype,
    the correct scaling), cast to ``wire``, divided by ``world_size`` there, summed in ``wire``
    in rank order, cast back."""
    locals_: list[Gradients] = []
    for rank in range(world_size):
        copied = model_copy(model, None, batch.mode)
        inputs = micro_batches(batch.inputs, world_size, accumulation_steps, rank)
        targets = micro_batches(batch.targets, world_size, accumulation_steps, rank)
        for micro in range(accumulation_steps):
            context = StepContext(
                rank, world_size, micro, accumulation_steps, batch.reduction, batch.loss
            )
            default_step(copied, inputs[micro], targets[micro], context).backward()
        locals_.append(_gradients(copied, names))
    combined: Gradients = {}
    for name in names:
        parts = [local[name] for local in locals_]
        present = [part for part in parts if part is not None]
        if len(present) < len(parts):
            combined[name] = None
            continue
        sent = [part.to(wire).div_(world_size) for part in present]
        total = sent[0]
        for part in sent[1:]:
            total = total + part
        combined[name] = total.to(present[0].dtype)
    return combined


def _gradients(model: torch.nn.Module, names: tuple[str, ...]) -> Gradients:
    parameters = dict(model.named_parameters())
    gradients: Gradients = {}
    for name in names:
        grad = parameters[name].grad
        gradients[name] = None if grad is None else grad.detach().clone()
    return gradients
