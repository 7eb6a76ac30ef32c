"""Kernels for the reference-check tests: low-precision custom autograd Functions with planted
bugs (each a mistake real kernels make), correct ones that compute in another order than eager,
their eager references, and seeded inputs (a private generator: the global RNG is not moved).

- :class:`ChunkedLinear`: ``y = x @ W.T`` whose weight gradient sums the batch in chunks with
  the running sum kept in the input dtype (bfloat16), so every chunk's add rounds it again;
- :class:`BlockedLinear`: the same layer done right: float32 accumulation over blocks of the
  batch, last block first (another order than eager's);
- :class:`SoftmaxMissingTerm`: softmax whose backward returns ``y * g`` (the ``- sum(y * g)``
  term is missing);
- :class:`NanScale`: ``3 * x`` whose backward returns ``3 * g * x / x`` (NaN where ``x`` is 0);
- :class:`RacyLinear`: a correct linear layer whose weight gradient sums the blocks in an order
  that changes on every call (a module-level counter standing in for GPU atomics);
- :class:`BesselVariance`: the population variance of each row, whose backward divides by
  ``N - 1`` instead of ``N``.
"""

from __future__ import annotations

import torch
from torch.autograd import Function

CHUNK = 16
"""The planted bug's chunk: a batch of 4096 is summed as 256 chunks, each added in bfloat16."""

BLOCK = 256
"""The correct kernel's block: float32 partial sums of 256 rows."""


def linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The eager reference of the linear kernels."""
    return x @ w.T


def softmax(x: torch.Tensor) -> torch.Tensor:
    """The eager softmax over the last dimension."""
    return torch.softmax(x, -1)


def variance(x: torch.Tensor) -> torch.Tensor:
    """The eager population variance of each row."""
    return x.var(-1, unbiased=False)


def doubled(x: torch.Tensor) -> torch.Tensor:
    """``2 * x``: exact in every binary dtype, so the reference's own error is 0."""
    return 2 * x


def tripled(x: torch.Tensor) -> torch.Tensor:
    """The eager ``3 * x``."""
    return 3 * x


class EagerForwardLinear(Function):
    """``x @ W.T`` forward (eager's), saving ``x`` and ``W``: the backward is the subclass's."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x @ w.T


class ChunkedLinear(EagerForwardLinear):
    """Planted bug: the weight gradient's running sum over the batch stays in the low dtype."""

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gw = torch.zeros_like(w)
        for start in range(0, x.shape[0], CHUNK):
            gw = gw + g[start : start + CHUNK].T @ x[start : start + CHUNK]
        return g @ w, gw


class BlockedLinear(Function):
    """Correct: float32 partial sums per block, added last block first, rounded once."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return (x.float() @ w.float().T).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gw = torch.zeros_like(w, dtype=torch.float32)
        for start in reversed(range(0, x.shape[0], BLOCK)):
            gw += g[start : start + BLOCK].float().T @ x[start : start + BLOCK].float()
        return (g.float() @ w.float()).to(x.dtype), gw.to(w.dtype)


class SoftmaxMissingTerm(Function):
    """Planted bug: softmax's backward without the ``- sum(y * g)`` term."""

    @staticmethod
    def forward(ctx, x):
        y = torch.softmax(x, -1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return y * g


class NanScale(Function):
    """Planted bug: ``3 * x`` whose backward is ``3 * g * x / x``, NaN at ``x == 0``."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return 3 * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * g * x / x


calls = 0
"""How many backwards :class:`RacyLinear` has run: each call sums its blocks in another order."""


class RacyLinear(EagerForwardLinear):
    """Correct but nondeterministic: float32 block sums added in an order that depends on how
    many times the backward has run (as GPU atomics add in whatever order the blocks finish)."""

    @staticmethod
    def backward(ctx, g):
        global calls
        calls += 1
        x, w = ctx.saved_tensors
        starts = list(range(0, x.shape[0], 64))
        if calls % 2:
            starts.reverse()
        gw = torch.zeros_like(w, dtype=torch.float32)
        for start in starts:
            gw += g[start : start + 64].float().T @ x[start : start + 64].float()
        return g @ w, gw.to(w.dtype)


class BesselVariance(Function):
    """Planted bug: the population variance, whose backward divides by ``N - 1``."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.var(-1, unbiased=False)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        centered = x - x.mean(-1, keepdim=True)
        return g.unsqueeze(-1) * 2 * centered / (x.shape[-1] - 1)


def randn(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Seeded N(0, 1) values in ``dtype`` (a private generator)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def linear_inputs(dtype: torch.dtype, batch: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of ``batch`` 16-feature rows and an 8 x 16 weight in ``dtype``."""
    return randn(batch, 16, seed=1, dtype=dtype), randn(8, 16, seed=2, dtype=dtype)


def cancelling_linear_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float32 inputs whose weight gradient cancels: rows ``100 + N(0, 1)`` and a cotangent
    centred per column, so ``g.T @ x`` sums 4096 terms of size ~100 to a result of size ~64 and
    every correct float32 order is off by a few 1e-5 relative (eager included)."""
    x = 100 + randn(4096, 16, seed=3)
    v = randn(4096, 8, seed=4)
    return x, randn(8, 16, seed=5), v - v.mean(0)
