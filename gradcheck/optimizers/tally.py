"""Comparing a parameter tensor after a step with its reference, chunk by chunk, as tensors.

A ResNet has 11.7 million weights: judging each one as a Python float would take minutes, so
each flat chunk is compared at once and merged into a :class:`Tally` (the deciding element, the
largest error in units of the last place, the share of the rounding bound used). The element
that decides is then passed to :func:`gradcheck.values.check_values`, the one judge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from gradcheck.tolerances import Tolerance

Tensor = torch.Tensor


def ulp(values: Tensor, dtype: torch.dtype) -> Tensor:
    """The spacing of ``dtype`` numbers at ``values`` (float64 in, float64 out)."""
    info = torch.finfo(dtype)
    _, exponent = torch.frexp(values)
    spacing = torch.ldexp(torch.full_like(values, info.eps), exponent - 1)
    smallest = info.tiny * info.eps  # the spacing of subnormals, and at zero
    return torch.where(values == 0, smallest, spacing.clamp_min_(smallest))


def where(name: str, flat: int, shape: torch.Size) -> str:
    index = torch.unravel_index(torch.tensor(flat), shape)
    return f"{name}[{', '.join(str(int(i)) for i in index)}]" if len(shape) else name


@dataclass
class Tally:
    """What the comparison of one parameter tensor at one step found, merged over its chunks.

    ``excess`` is the largest ``|diff| - allowed`` (the element that decides the verdict);
    ``ulps`` the largest ``|diff|`` in units of the last place of the measured dtype at the
    larger of the parameter's value before and after the step; ``share`` the largest
    ``|diff| / rounding bound`` (how much of the rounding allowance was used).
    """

    excess: float = -math.inf
    excess_at: int = 0
    measured: float = math.nan
    expected: float = math.nan
    bound: float = 0.0
    ulps: float = 0.0
    ulps_at: int = 0
    ulps_diff: float = 0.0
    ulps_bound: float = 0.0
    share: float = 0.0
    failed: int = 0
    undecided: int = 0


def tally_chunk(
    tally: Tally,
    offset: int,
    measured: Tensor,
    before: Tensor,
    expected: Tensor,
    bound: Tensor,
    tolerance: Tolerance,
) -> tuple[Tensor, Tensor]:
    """Compare one flat chunk and merge it into ``tally``; return the expected values and bounds
    with undecided elements (no finite reference, or an unbounded rounding bound) as NaN and 0."""
    got = measured.to(torch.float64)
    decided = expected.isfinite() & bound.isfinite()
    undecided = int(decided.numel() - decided.sum())
    if undecided:
        expected = torch.where(decided, expected, math.nan)
        bound = torch.where(decided, bound, 0.0)
    diff = (got - expected).abs_()
    if undecided:
        diff = torch.where(decided, diff, 0.0)
    diff.nan_to_num_(nan=math.inf, posinf=math.inf)  # a NaN measured against a finite value
    excess = diff - tolerance.allowed(expected, bound)
    if undecided:
        excess = torch.where(decided, excess, -math.inf)
    tally.failed += int((excess > 0).sum())
    at = int(excess.argmax())
    if float(excess[at]) > tally.excess or tally.excess == -math.inf:
        tally.excess, tally.excess_at = float(excess[at]), offset + at
        tally.measured, tally.expected = float(got[at]), float(expected[at])
        tally.bound = float(bound[at])
    share = (diff / bound).nan_to_num_(nan=0.0, posinf=math.inf)
    tally.share = max(tally.share, float(share.max()))
    scale = torch.maximum(before.to(torch.float64).abs(), expected.nan_to_num(0.0).abs())
    ulps = diff.div_(ulp(scale, measured.dtype))
    most = int(ulps.argmax())
    if float(ulps[most]) > tally.ulps:
        tally.ulps, tally.ulps_at = float(ulps[most]), offset + most
        tally.ulps_diff = float((got[most] - expected[most]).abs())
        tally.ulps_bound = float(bound[most])
    tally.undecided += undecided
    return expected, bound
