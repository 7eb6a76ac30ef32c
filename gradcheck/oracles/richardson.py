"""Richardson extrapolation: one rule, the full table, and the two-level per-rule candidates.

A quotient at step ``h`` has the error series ``Q(h) = phi' + c h^p + ...`` (``p = 2`` for the
central quotient, ``p = 1`` for the one-sided ones). From a coarse step ``r*h`` and a fine step
``h``, :func:`extrapolate` removes the ``h^p`` term:
``fine + (fine - coarse) / (r**p - 1)``.

- :func:`best_of_table` is the full table over a sequence of steps divided by ``ratio`` each time
  (``FiniteDifference``: ratio 2, orders 2, 4, 6, ... for the central quotient). Every entry
  gets an error estimate (its distance to its two parents plus the rounding error amplified by
  the extrapolation levels above it); the entry with the smallest estimate wins.
- :func:`agrees_with_finest` checks the chosen entry against the finest steps: two coarse steps
  can agree by coincidence (a staircase such as ``round(x, decimals=3)``), so no entry is trusted
  that the last central quotient contradicts beyond its rounding and its own truncation scale.
- :func:`two_level_candidates` extrapolates each quotient (central, forward, backward) over two
  consecutive steps once (``directional_derivative``).

The extrapolated value is exact for a series that stops at ``h^p``, up to float rounding.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from gradcheck.oracles.steps import Number, Quotients

TABLE_RATIO = 2.0
"""FiniteDifference's step ratio (halving)."""

TABLE_ORDER_STEP = 2
"""The central quotient's error series has even powers only: the table's column ``k`` removes
``h^(2k)``."""

CANDIDATE_RULES: tuple[tuple[str, int, float], ...] = (
    ("central", 2, 1.0),
    ("forward", 1, 2.0),
    ("backward", 1, 2.0),
)
"""``(quotient, order, rounding in units of the level's rounding)`` for each two-level candidate:
the central quotient divides two evaluations' errors by ``2h`` (1x), a one-sided one by ``h``
(2x). The order also decides ties: the first rule with the smallest error wins."""


class Entry(NamedTuple):
    """An extrapolated value with its error estimate."""

    value: float
    error: float


@dataclass(frozen=True)
class Candidate:
    """One quotient extrapolated over two levels: ``step`` is the finer level's step."""

    rule: str
    value: float
    error: float
    step: float


def extrapolate(coarse: Number, fine: Number, ratio: float, order: int) -> Number:
    """Remove the ``h^order`` term: ``fine + (fine - coarse) / (ratio**order - 1)``."""
    return fine + (fine - coarse) / (ratio**order - 1.0)


def amplification(ratio: float, orders: Iterable[int]) -> float:
    """How much extrapolating at each of ``orders`` in turn amplifies rounding, at most:
    ``prod(1 + 2 / (ratio**order - 1))``."""
    return math.prod(1 + 2 / (ratio**order - 1) for order in orders)


def converged(
    value: Number, error: Number, rounding: Number, rounding_factor: float, relative: float
) -> Any:
    """An extrapolation has converged: ``error <= relative * |value| + rounding_factor *
    rounding`` (a bool for floats; for tensors, element by element)."""
    return error <= relative * abs(value) + rounding_factor * rounding


def best_of_table(
    levels: Sequence[Quotients],
    ratio: float = TABLE_RATIO,
    order_step: int = TABLE_ORDER_STEP,
) -> Entry:
    """The best entry of the Richardson table of the central quotients of ``levels`` (steps
    divided by ``ratio`` from one level to the next) and its error estimate.

    Column ``k`` removes ``h^(k * order_step)``. With fewer than two levels no entry has an
    error estimate: the last central quotient is returned with an infinite error.
    """
    table: list[list[float]] = []
    best = Entry(levels[-1].central, math.inf)
    for j, level in enumerate(levels):
        row = [level.central]
        for k in range(1, j + 1):
            row.append(extrapolate(table[j - 1][k - 1], row[k - 1], ratio, k * order_step))
        table.append(row)
        for k in range(1, j + 1):
            truncation = abs(row[k] - row[k - 1]) + abs(row[k] - table[j - 1][k - 1])
            orders = (i * order_step for i in range(1, k + 1))
            error = truncation + level.rounding * amplification(ratio, orders)
            if error < best.error:
                best = Entry(row[k], error)
    return best


@functools.lru_cache(maxsize=1024)
def _column_amplification(ratio: float, order_step: int, k: int) -> float:
    """:func:`amplification` of the table's column ``k`` (computed once)."""
    return amplification(ratio, (i * order_step for i in range(1, k + 1)))


@functools.lru_cache(maxsize=64)
def _columns(
    ratio: float, order_step: int, depth: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """For columns ``1..depth - 1`` of a table: :func:`extrapolate`'s denominator
    ``ratio**order - 1`` and :func:`amplification` (index 0 unused), computed once."""
    denominators = tuple(ratio ** (k * order_step) - 1.0 for k in range(depth))
    amplifications = tuple(_column_amplification(ratio, order_step, k) for k in range(depth))
    return denominators, amplifications


class Table:
    """:func:`best_of_table` built one level at a time: adding a level costs one row of the
    table, and :meth:`best` equals ``best_of_table`` of the levels added so far, digit for
    digit (the same entries in the same order, the first smallest error winning)."""

    def __init__(self, ratio: float = TABLE_RATIO, order_step: int = TABLE_ORDER_STEP) -> None:
        self.ratio, self.order_step = ratio, order_step
        self.previous: list[float] = []
        self.depth = 0
        self.last_central = math.nan
        self.best_entry = Entry(math.nan, math.inf)

    def clear(self) -> None:
        """Start again without levels (a dropped step breaks the halving sequence)."""
        self.previous, self.depth = [], 0
        self.best_entry = Entry(math.nan, math.inf)

    def add(self, level: Quotients) -> None:
        """Append ``level``'s row of the table."""
        self.extend((level,))

    def extend(self, levels: Sequence[Quotients]) -> None:
        """Append each of ``levels``' rows in turn (:func:`extrapolate`'s arithmetic inlined:
        ``fine + (fine - coarse) / (ratio**order - 1)``, the same digits)."""
        if not levels:
            return
        depth = self.depth + len(levels)
        denominators, amplifications = _columns(self.ratio, self.order_step, depth)
        previous, j = self.previous, self.depth
        best_value, best_error = self.best_entry
        for level in levels:
            row = [level.central]
            fine = level.central
            for k in range(1, j + 1):
                coarse = previous[k - 1]
                entry = fine + (fine - coarse) / denominators[k]
                error = abs(entry - fine) + abs(entry - coarse) + level.rounding * amplifications[k]
                if error < best_error:
                    best_value, best_error = entry, error
                row.append(entry)
                fine = entry
            previous, j = row, j + 1
        self.best_entry = Entry(best_value, best_error)
        self.previous, self.depth = previous, j
        self.last_central = levels[-1].central

    def best(self) -> Entry:
        """The entry of smallest error so far (the last central quotient with an infinite error
        while none has an error estimate)."""
        if self.best_entry.error == math.inf:
            return Entry(self.last_central, math.inf)
        return self.best_entry


def agrees_with_finest(
    levels: Sequence[Quotients], entry: Entry, rounding_factor: float, truncation_factor: float
) -> bool:
    """The last central quotient lies within ``entry.error + rounding_factor * rounding +
    truncation_factor * |D(h_last) - D(h_prev)|`` of ``entry.value``.

    On a smooth function the last quotient sits about a third of its last change from the limit
    (``D = phi' + c h^2``, each change a quarter of the one before); a staircase whose finest
    steps no longer move the output puts it at 0, however well two coarse steps agreed. A last
    change larger than the one before it allows no truncation at all.
    """
    last = levels[-1]
    truncation = abs(last.central - levels[-2].central) if len(levels) > 1 else math.inf
    if len(levels) > 2 and truncation > abs(levels[-2].central - levels[-3].central):
        # The quotients are not settling (each change larger than the one before: a staircase's
        # edges, 1/h growth), so the last change bounds no truncation error.
        truncation = 0.0
    allowed = entry.error + rounding_factor * last.rounding + truncation_factor * truncation
    return abs(last.central - entry.value) <= allowed


def best_of_tables(
    central: torch.Tensor,
    rounding: torch.Tensor,
    ratio: float = TABLE_RATIO,
    order_step: int = TABLE_ORDER_STEP,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`best_of_table` of many step sequences at once: ``central`` and ``rounding`` are
    ``(levels, sequences)``; returns each sequence's best value and error. The same entries,
    error estimates and choice (the first smallest error; none with an estimate: the last
    central quotient, error inf), digit for digit."""
    levels = int(central.shape[0])
    if levels < 2:
        return central[-1], torch.full_like(central[-1], math.inf)
    # Column by column: column k holds the entries of rows k..levels-1 (each extrapolated from
    # the column before's consecutive pair), laid into (row, column) grids whose padding (the
    # quotients' own column, and columns past their row) has error inf, so that reading the grid
    # row by row meets the entries in the scalar table's order.
    grid = (levels, levels, *central.shape[1:])
    values = central.new_zeros(grid)
    errors = central.new_full(grid, math.inf)
    column = central
    for k in range(1, levels):
        entries = extrapolate(column[:-1], column[1:], ratio, k * order_step)
        truncation = (entries - column[1:]).abs() + (entries - column[:-1]).abs()
        values[k:, k] = entries
        errors[k:, k] = truncation + rounding[k:] * _column_amplification(ratio, order_step, k)
        column = entries
    error = errors.reshape(levels * levels, *central.shape[1:])
    error = torch.where(torch.isnan(error), math.inf, error)
    first = error.argmin(dim=0, keepdim=True)  # the first smallest, as the scalar table's "<"
    best_error = error.gather(0, first)[0]
    best_value = values.reshape(levels * levels, *central.shape[1:]).gather(0, first)[0]
    return torch.where(best_error == math.inf, central[-1], best_value), best_error


def agree_with_finest(
    central: torch.Tensor,
    last_rounding: torch.Tensor,
    value: torch.Tensor,
    error: torch.Tensor,
    rounding_factor: float,
    truncation_factor: float,
) -> torch.Tensor:
    """:func:`agrees_with_finest` of many step sequences at once (``central``:
    ``(levels, sequences)``, at least two levels), digit for digit."""
    last = central[-1]
    truncation = (last - central[-2]).abs()
    if int(central.shape[0]) > 2:
        settling = truncation > (central[-2] - central[-3]).abs()
        truncation = torch.where(settling, 0.0, truncation)
    allowed = error + rounding_factor * last_rounding + truncation_factor * truncation
    return (last - value).abs() <= allowed


def two_level_candidates(
    coarse: Quotients,
    fine: Quotients,
    ratio: float,
    rules: Sequence[tuple[str, int, float]] = CANDIDATE_RULES,
) -> list[Candidate]:
    """Each quotient extrapolated over two consecutive levels, with its error estimate
    ``|fine - coarse| + rounding_units * fine.rounding``."""
    out = []
    for rule, order, rounding_units in rules:
        a, b = getattr(coarse, rule), getattr(fine, rule)
        out.append(
            Candidate(
                rule=rule,
                value=extrapolate(a, b, ratio, order),
                error=abs(b - a) + rounding_units * fine.rounding,
                step=fine.step,
            )
        )
    return out
