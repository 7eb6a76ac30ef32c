"""Named work buffers that one finite-difference run reuses from level to level (and a model
check from batch to batch).

A level of a 1e7-element check forms a dozen full-size temporaries (the perturbed points, the
steps taken, the differences contracted with the cotangent, the rounding sizes). Each one above
glibc's mmap threshold (at most 32 MB) is a fresh mapping whose pages the kernel zeroes on first
touch: at 1e7 elements that page-fault time was twice the arithmetic. The oracle instead writes
into these buffers with ``out=`` and in-place ops, which compute the same digits as the
expressions they replace.
"""

from __future__ import annotations

import math

import torch


class Scratch:
    """Flat buffers by name, each grown on demand and handed out as a contiguous view of the
    shape asked for. A buffer's contents are only valid until the next :meth:`take` of its
    name: callers keep nothing from it beyond that. Buffers of one name but another dtype or
    device are kept apart."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._buffers: dict[tuple[str, torch.dtype, torch.device], torch.Tensor] = {}

    def take(
        self,
        name: str,
        shape: tuple[int, ...],
        dtype: torch.dtype = torch.float64,
        device: torch.device | None = None,
    ) -> torch.Tensor:
        """A contiguous ``shape`` view of buffer ``name`` (uninitialised), on ``device`` (this
        scratch's own when None)."""
        numel = math.prod(shape)
        key = (name, dtype, self.device if device is None else device)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < numel:
            buffer = torch.empty(numel, dtype=dtype, device=key[2])
            self._buffers[key] = buffer
        return buffer[:numel].view(shape)

    def take_exact(
        self, name: str, shape: tuple[int, ...], dtype: torch.dtype = torch.float64
    ) -> torch.Tensor:
        """A ``shape`` tensor (uninitialised) whose storage holds exactly its elements, as a
        fresh tensor's does (fn may read its argument's storage: ``as_strided``), from buffer
        ``name``, replaced when the size changes."""
        numel = math.prod(shape)
        key = (name, dtype, self.device)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() != numel:
            buffer = torch.empty(numel, dtype=dtype, device=self.device)
            self._buffers[key] = buffer
        return buffer.view(shape)

    def drop(self, name: str) -> None:
        """Let buffer ``name`` go (of every dtype and device): a buffer one phase of a run
        needs is not held through the rest of it."""
        for key in [key for key in self._buffers if key[0] == name]:
            del self._buffers[key]
