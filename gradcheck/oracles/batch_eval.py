"""fn at many points at once: one ``torch.func.vmap`` call where fn allows it and it reproduces
the point-by-point numbers, else point by point.

The finite-difference engine needs fn at ``x +/- h*u`` for every probe ``u`` of a step: hundreds
of calls of a small function, each costing more in Python than in arithmetic. Under
:func:`torch.func.vmap` a batch of points is one call. vmap is used only where it is exact:

- every batch carries the unperturbed point as its first and last row, and those two rows must
  agree bitwise. When they also equal fn's own outputs at the point, the batch is fn's numbers;
  when they differ from them (a batched matmul blocks its sums another way, so it rounds
  differently), the batch comes with its own center (``Rows.center``): its quotients are taken
  against fn at the point evaluated the same way, as a point-by-point check takes every
  quotient against one evaluation at the point (against fn's own center, the rounding
  difference would read as a jump between the one-sided quotients). When the two rows differ
  (rounding that depends on the row), or the center rows differ from fn's own by more than
  rounding, the batch is redone point by point; one perturbed row of every batch is also
  evaluated point by point and must agree in the same way (so a batch in which fn computes
  something else, such as ``as_strided`` reading another layout, is never used);
- random numbers are drawn once for the whole batch (vmap's ``randomness="same"``): every
  point-by-point call draws them from the same seeded generator (the check's frozen RNG), so
  each row sees the numbers its own call would, which the checking rows confirm batch by batch;
- fn raising under vmap (no batching rule, ``.item()``, data-dependent control flow, a random
  op vmap cannot batch, a custom Function without a vmap rule) sends the batch point by point;
- arguments whose layout fn may read (views into a larger storage) are never batched.

When the point-by-point evaluation of a batch that vmap refused raises nowhere, the refusal
belongs to fn, not to a point (a domain error at one perturbed point also fails the batch): it is
remembered for the rest of the problem and, keyed by fn's code and qualified name (one entry per
op for ``gradcheck ops``), for later problems, so no batch is tried twice. Batches are cut so
that one call holds at most :data:`BATCH_BYTES` of points and outputs.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import torch

from gradcheck.oracles.base import Problem
from gradcheck.oracles.scratch import Scratch

BATCH_BYTES = 32 * 2**20
"""The most bytes of points and float64 outputs one vmapped call holds (times a small factor
for fn's temporaries); larger batches are cut."""

MIN_VMAP_ROWS = 4
"""Batches of fewer points than this go point by point: vmap's two checking rows would cost
more than they save."""

REMEMBERED = 4096
"""How many functions' vmap refusals are remembered (the oldest are forgotten first)."""

_REFUSED: OrderedDict[Hashable, str] = OrderedDict()
_REFUSED_LOCK = threading.Lock()


@dataclass
class Rows:
    """fn's floating outputs at a batch of points: one float64 tensor per output, shaped
    ``(points, *output shape)`` (NaN in the rows of points where fn raised), the exception of
    each point (None where fn returned), and the outputs at the unperturbed point evaluated
    the same way when they differ from fn's own (None: fn's own)."""

    outputs: list[torch.Tensor]
    errors: list[Exception | None]
    center: list[torch.Tensor] | None = None

    def head(self, count: int) -> Rows:
        """The first ``count`` points' rows."""
        return Rows([out[:count] for out in self.outputs], self.errors[:count], self.center)

    def tail(self, count: int) -> Rows:
        """The rows after the first ``count`` points."""
        return Rows([out[count:] for out in self.outputs], self.errors[count:], self.center)


def function_key(fn: Callable[..., Any]) -> Hashable:
    """What identifies fn across problems: its code object (its class for a callable object)
    and its qualified name (``functools.wraps`` carries the wrapped one)."""
    code = getattr(fn, "__code__", None)
    return (code if code is not None else type(fn), getattr(fn, "__qualname__", None))


def refusal(fn: Callable[..., Any]) -> str | None:
    """Why vmap is not used for fn (remembered from an earlier problem), or None."""
    with _REFUSED_LOCK:
        return _REFUSED.get(function_key(fn))


def _remember(fn: Callable[..., Any], reason: str) -> None:
    with _REFUSED_LOCK:
        _REFUSED[function_key(fn)] = reason
        while len(_REFUSED) > REMEMBERED:
            _REFUSED.popitem(last=False)


class PointEvaluator:
    """fn's floating outputs (float64, cotangent order) at many flat points of one problem.

    ``center`` holds the outputs at the problem's point, evaluated point by point: the rows vmap
    must reproduce. ``batched`` says whether vmap is still in use for this problem.
    """

    def __init__(self, problem: Problem, center: list[torch.Tensor]) -> None:
        self.problem = problem
        self.center = center
        self.batched = (
            not problem.laid_out
            and problem.point.device.type in ("cpu", "cuda")
            and refusal(problem.fn) is None
        )
        self.vmapped = 0
        self.looped = 0
        out_elements = sum(out.numel() for out in center)
        row_bytes = 8 * (problem.size + out_elements) * 4
        self.rows_per_call = max(1, BATCH_BYTES // max(row_bytes, 1))

    def at(self, points: torch.Tensor, scratch: Scratch | None = None) -> Rows:
        """The outputs at every row of ``points`` (``(count, size)`` float64). With ``scratch``,
        rows evaluated point by point may be written into its buffers: valid until its next
        use, so the caller must be done with them by then."""
        count = int(points.shape[0])
        if count == 0:
            return Rows([out.new_empty((0, *out.shape)) for out in self.center], [])
        chunk = self.rows_per_call
        if not self.batched or chunk < MIN_VMAP_ROWS or count < MIN_VMAP_ROWS - 2:
            return self._loop(points, scratch)
        parts = [self._batch(points[i : i + chunk - 2]) for i in range(0, count, chunk - 2)]
        if len(parts) == 1:
            return parts[0]
        if any(part.center is not None for part in parts):
            # Chunks with centers of their own cannot share one: go point by point.
            return self._loop(points, scratch)
        return Rows(
            [torch.cat([part.outputs[j] for part in parts]) for j in range(len(self.center))],
            [error for part in parts for error in part.errors],
        )

    def _batch(self, points: torch.Tensor) -> Rows:
        if not self.batched:
            return self._loop(points)
        point = self.problem.point[None, :]
        framed = torch.cat([point, points, point])
        try:
            with warnings.catch_warnings():
                # An op without a batching rule runs vmap's own loop: exact, only slower.
                warnings.filterwarnings("ignore", message="There is a performance drop")
                vmapped = torch.func.vmap(self.problem.floating_outputs_at, randomness="same")
                outputs = vmapped(framed)
        except Exception as error:  # fn's code under vmap: any refusal means "go point by point"
            rows = self._loop(points)
            if all(e is None for e in rows.errors):
                self._refuse(f"{type(error).__name__} under vmap")
            return rows
        if not all(_same(out[0], out[-1]) for out in outputs):
            self._refuse("vmap rounds differently from row to row")
            return self._loop(points)
        own = all(_same(out[0], c) for out, c in zip(outputs, self.center))
        if not own and not all(_close(out[0], c) for out, c in zip(outputs, self.center)):
            # Not a rounding difference: under vmap fn computes something else (as_strided
            # reads another layout of a batched tensor).
            self._refuse("vmap computes other values than the point-by-point call")
            return self._loop(points)
        # One perturbed row point by point: it must agree as the center rows do.
        middle = int(points.shape[0]) // 2
        try:
            alone = self.problem.floating_outputs_at(points[middle].clone())
        except Exception:  # fn raised there alone but not in the batch: trust neither
            self._refuse("vmap returns values where the point-by-point call raises")
            return self._loop(points)
        agree = _same if own else _close
        if not all(agree(out[1 + middle], a) for out, a in zip(outputs, alone)):
            self._refuse("vmap computes other values than the point-by-point call")
            return self._loop(points)
        self.vmapped += int(points.shape[0])
        return Rows(
            [out[1:-1] for out in outputs],
            [None] * int(points.shape[0]),
            None if own else [out[0] for out in outputs],
        )

    def _refuse(self, reason: str) -> None:
        self.batched = False
        _remember(self.problem.fn, reason)

    def _loop(self, points: torch.Tensor, scratch: Scratch | None = None) -> Rows:
        """Point by point: each point's outputs, NaN and the exception where fn raised (into
        ``scratch``'s buffers when given)."""
        count = int(points.shape[0])
        outputs = [
            torch.empty((count, *c.shape), dtype=c.dtype, device=c.device)
            if scratch is None
            else scratch.take(f"rows {j}", (count, *c.shape), c.dtype, c.device)
            for j, c in enumerate(self.center)
        ]
        errors: list[Exception | None] = []
        for i in range(count):
            try:
                # A tensor of its own, as fn gets in a call of its own: a row of the batch would
                # be a view at an offset into it, and ops that read the storage (as_strided) see
                # that. With scratch, one buffer of exactly a point's size, refilled per point
                # (fn's outputs are copied out before the next), not a fresh page-faulted copy.
                values = self.problem.floating_outputs_at(_own_copy(points[i], scratch))
            except Exception as error:  # fn is the caller's code: a raise spoils this point only
                errors.append(error)
                _spoil(outputs, i)
                continue
            shapes = [tuple(value.shape) for value in values]
            if shapes != [tuple(c.shape) for c in self.center]:
                errors.append(ValueError(f"fn's outputs have shapes {shapes} here"))
                _spoil(outputs, i)
                continue
            errors.append(None)
            for j, value in enumerate(values):
                outputs[j][i] = value
        self.looped += int(points.shape[0])
        return Rows(outputs, errors)


def _own_copy(point: torch.Tensor, scratch: Scratch | None) -> torch.Tensor:
    """``point`` copied into a tensor whose storage is exactly its own: a clone, or
    ``scratch``'s point buffer (the same values; valid until the next point)."""
    if scratch is None:
        return point.clone()
    return scratch.take_exact("point", tuple(point.shape), point.dtype).copy_(point)


def _spoil(outputs: list[torch.Tensor], i: int) -> None:
    """NaN in row ``i`` of every output: fn gave nothing usable there."""
    for out in outputs:
        out[i] = torch.nan


CLOSE_RELATIVE = 1e-10
"""A batch whose rows differ from the point-by-point call by at most this much of the output's
largest magnitude differs by summation order only (the batch then keeps its own center)."""


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal within summation-order rounding: NaN/Inf where the other is, finite elements
    within :data:`CLOSE_RELATIVE` of ``b``'s largest finite magnitude."""
    if a.shape != b.shape:
        return False
    if b.numel() == 0:
        return True
    largest = float((a - b).abs().max())
    if largest < math.inf:  # both finite everywhere (a NaN or Inf on either side makes it NaN/Inf)
        return largest <= CLOSE_RELATIVE * float(b.abs().max())
    finite = torch.isfinite(b)
    if not bool(((torch.isfinite(a) == finite) & (finite | _same_elements(a, b))).all()):
        return False
    scale = float(b[finite].abs().max()) if bool(finite.any()) else 0.0
    return bool(((a - b).abs()[finite] <= CLOSE_RELATIVE * scale).all())


def _same_elements(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a == b) | (torch.isnan(a) & torch.isnan(b))


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise-equal values (NaN equal to NaN) of the same shape."""
    if a.shape != b.shape:
        return False
    # torch.equal is one call; only where it finds a difference (NaN != NaN) look closer.
    return torch.equal(a, b) or bool(_same_elements(a, b).all())
