"""Step sequences and the one record of difference quotients at one step.

Both finite-difference engines differentiate ``phi(t)`` at ``t = 0`` from ``phi(+h)``,
``phi(0)`` and ``phi(-h)`` at shrinking steps ``h``. :class:`FiniteDifference` halves its steps
(:func:`halving_step`), :func:`directional_derivative` divides them by a ratio, 10 by default
(:func:`geometric_step`). At each step both form the same three quotients (:class:`Quotients`):
central ``D = (phi(h) - phi(-h)) / 2h`` and one-sided ``F = (phi(h) - phi(0)) / h`` and
``B = (phi(0) - phi(-h)) / h``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, TypeVar

import torch


class Quotients(NamedTuple):
    """The three difference quotients at one step, with the step's rounding error (a named
    tuple: the engines make one per probe and step, thousands per check).

    ``rounding`` is the rounding error of a one-step quotient (see
    :func:`gradcheck.oracles.noise.evaluation_rounding`). ``moved`` is False when no output
    changed at this step (the derivative is then below the function's resolution).
    """

    step: float
    central: float
    forward: float
    backward: float
    rounding: float
    moved: bool = True

    @property
    def signed_gap(self) -> float:
        """``F - B``: about ``h * phi''`` on a smooth piece, constant across a kink."""
        return self.forward - self.backward

    @property
    def gap(self) -> float:
        """``|F - B|``."""
        return abs(self.forward - self.backward)


def halving_step(first: float, j: int) -> float:
    """Step ``j`` of the halving sequence ``first / 2**j``."""
    return first / 2**j


def geometric_step(first: float, ratio: float, j: int) -> float:
    """Step ``j`` of the sequence ``first / ratio**j`` (``ratio=10``: decades)."""
    return first / ratio**j


def geometric_steps(first: float, ratio: float, count: int) -> list[float]:
    """The first ``count`` steps of :func:`geometric_step`."""
    return [geometric_step(first, ratio, j) for j in range(count)]


def signed_pairs(steps: Sequence[float]) -> list[float]:
    """``[h0, -h0, h1, -h1, ...]``: the evaluation points of the given steps, in order."""
    return [t for step in steps for t in (step, -step)]


def quotients(
    step: float,
    *,
    up: float,
    down: float,
    both: float,
    rounding: float,
    plus_size: float | None = None,
    minus_size: float | None = None,
    moved: bool = True,
) -> Quotients:
    """The quotients from the differences ``up = phi(h) - phi(0)``, ``down = phi(0) - phi(-h)``
    and ``both = phi(h) - phi(-h)``.

    ``plus_size``/``minus_size`` are the steps actually taken on each side (``x + h`` rounds);
    they default to ``step``. ``both`` is passed separately because a caller that forms the
    differences output by output gets a more accurate ``both`` than ``up + down``.
    """
    plus = step if plus_size is None else plus_size
    minus = step if minus_size is None else minus_size
    central, forward, backward = divided(up, down, both, plus, minus)
    return Quotients(step, central, forward, backward, rounding, moved)


Number = TypeVar("Number", float, torch.Tensor)
"""A float, or a tensor of them computed element by element with the same digits."""


def divided(
    up: Number, down: Number, both: Number, plus: Number, minus: Number
) -> tuple[Number, Number, Number]:
    """The central, forward and backward quotients from the differences and the steps taken
    (floats, or tensors element by element)."""
    return both / (plus + minus), up / plus, down / minus


class QuotientRows(NamedTuple):
    """:class:`Quotients` of many steps and sequences at once, each field a tensor."""

    step: torch.Tensor
    central: torch.Tensor
    forward: torch.Tensor
    backward: torch.Tensor
    rounding: torch.Tensor
    moved: torch.Tensor


def scalar_quotients(
    step: float, plus: float, center: float, minus: float, rounding: float
) -> Quotients:
    """The quotients from ``phi(h)``, ``phi(0)`` and ``phi(-h)`` of a scalar function."""
    return quotients(
        step, up=plus - center, down=center - minus, both=plus - minus, rounding=rounding
    )
