"""The shapes of the oracle's batched evaluations: the stacked points of one tensor's probes, and
the modules whose inputs a ``torch.func.vmap`` batch lifts when the plain batch cannot run.

Inside ``vmap`` only the replaced tensor and what depends on it are batched. An in-place op that
writes a batched value into an unbatched tensor cannot run: ResNet's ``out += identity`` below a
replaced ``downsample`` (the block's main branch is unbatched, its shortcut batched). Such a
tensor is retried with the inputs of an enclosing module lifted into the batch (each lane gets
the input plus ``-0.0``, which leaves every value, ``-0.0`` and NaN included, bit for bit as it
was), innermost first: for ``layer2.0.downsample.0.weight`` the block ``layer2.0``, whose main
branch then runs batched too, so only the layers before the block run once for the whole batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch.utils._pytree import tree_map

ROOT = ""
"""The path of the module itself: lifting it batches the module's inputs."""


def probe_points(
    base: torch.Tensor,
    directions: Sequence[torch.Tensor],
    steps: Sequence[float],
    *,
    center: bool = True,
    like: torch.Tensor | None = None,
    storage: torch.Tensor | None = None,
) -> torch.Tensor:
    """``base`` (when ``center``) and then ``base + t * u`` for each direction ``u`` and each
    step ``t``, stacked along a new first dimension, each point bit for bit the tensor
    ``base + t * u`` would be (one product, one sum). Each point is laid out in memory as
    ``like`` is (the tensor the points replace, channels-last in the oracle's copies,
    :mod:`gradcheck.model.layout`), so a batched convolution weight needs no copy into that
    layout; contiguous when ``like`` is None or not dense. With ``storage`` (a 1-D tensor of
    ``base``'s dtype and device holding at least :func:`points_size` elements) the points are
    written into it rather than into fresh memory."""
    offset = 1 if center else 0
    count = offset + len(directions) * len(steps)
    points = _stacked_like(count, base, base if like is None else like, storage)
    if center:
        points[0] = base
    if not steps:
        return points
    column = torch.tensor(list(steps), dtype=base.dtype, device=base.device)
    column = column.view(-1, *([1] * base.dim()))
    for k, u in enumerate(directions):
        block = points[offset + k * len(steps) : offset + (k + 1) * len(steps)]
        torch.mul(column, u, out=block)
        block.add_(base)
    return points


def points_size(base: torch.Tensor, directions: int, steps: int, center: bool = True) -> int:
    """How many elements :func:`probe_points` writes."""
    return ((1 if center else 0) + directions * steps) * base.numel()


def _stacked_like(
    count: int, base: torch.Tensor, like: torch.Tensor, storage: torch.Tensor | None
) -> torch.Tensor:
    """An uninitialised ``(count, *base.shape)`` tensor whose every slice along the first
    dimension has ``like``'s strides (contiguous unless ``like`` is dense channels-last), in
    ``storage`` when given."""
    shape = (count, *base.shape)
    dense_channels_last = (
        like.dim() == 4
        and like.shape == base.shape
        and not like.is_contiguous()
        and like.is_contiguous(memory_format=torch.channels_last)
    )
    lane = like.stride() if dense_channels_last else _contiguous_strides(base.shape)
    strides = (base.numel(), *lane)
    if storage is None:
        return torch.empty_strided(shape, strides, dtype=base.dtype, device=base.device)
    return storage[: count * base.numel()].as_strided(shape, strides)


def _contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def owner(name: str) -> str:
    """The path of the module holding the parameter or buffer ``name`` (``""``: the root)."""
    return name.rpartition(".")[0]


def enclosing_modules(key: str | int) -> list[str]:
    """The modules whose inputs may be lifted for the tensor ``key`` (a parameter's name), the
    innermost first and the module itself (:data:`ROOT`) last: for ``"layer2.0.conv1.weight"``
    ``["layer2.0", "layer2", ""]``. The parameter's own module is left out (its output is batched
    already), and so is every module for an input (position), which is batched from the start."""
    if isinstance(key, int):
        return []
    module = owner(key)
    if not module:
        return []
    parts = module.split(".")
    return [".".join(parts[:depth]) for depth in range(len(parts) - 1, -1, -1)]


def lift_candidates(key: str | int, lifted: set[str]) -> list[str | None]:
    """The liftings to try for ``key`` in order, ``None`` meaning none. A module already lifted
    for another tensor of the check (a sibling in the same block) is tried first, since the
    plain batch would fail the same way; otherwise the plain batch first, then each enclosing
    module outwards."""
    outer = enclosing_modules(key)
    known = [i for i, path in enumerate(outer) if path in lifted]
    if known:
        return list(outer[known[0] :])
    return [None, *outer]


def per_lane_buffers(
    buffers: Iterable[str], order: dict[str, int], first_batched: str | None
) -> frozenset[str] | None:
    """In train mode, the buffers a batch gives one copy per lane: a module that normalises
    batched activations updates its running statistics in place with batched values, which
    vmap allows only on batched tensors. The modules forward first calls before the first
    batched one (``first_batched``: the replaced parameter's module, or the lifted one) see the
    unbatched activations, so their buffers stay unbatched and those layers run once for the
    whole batch, as in eval mode. None (every buffer per lane) when ``first_batched`` is None
    (an input is replaced) or was not seen called. A module called again further on writes
    batched values into its unbatched buffer and vmap raises: the caller then tries the next
    lifting, and at last every buffer per lane."""
    if first_batched is None or first_batched not in order:
        return None
    start = order[first_batched]
    late = len(order)
    return frozenset(name for name in buffers if order.get(owner(name), late) >= start)


@contextlib.contextmanager
def lifted_inputs(
    module: torch.nn.Module, path: str | None, lane_zero: torch.Tensor
) -> Iterator[None]:
    """While inside, every floating-point or complex tensor passed to the submodule at ``path``
    has ``lane_zero`` (a batched ``-0.0`` inside ``vmap``) added, which puts it in the batch
    without changing a bit of it. ``path=None`` lifts nothing."""
    if path is None:
        yield
        return

    def lift(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex()):
            return value + lane_zero
        return value

    def hook(
        _module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return tree_map(lift, args), tree_map(lift, kwargs)

    handle = module.get_submodule(path).register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
