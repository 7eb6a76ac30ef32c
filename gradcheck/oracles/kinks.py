"""Kinks and jumps from the one-sided gap ``F - B`` at consecutive steps.

On a smooth piece ``F - B = h*phi'' + O(h^2)``: the gap shrinks in proportion to the step and
keeps its sign. A kink (switch point) at the point keeps the gap put, ``phi'(0+) - phi'(0-)``;
a jump makes it grow like ``1/h``. A switch point at a distance ``d`` spoils only the steps
``h > d``: once the step is below ``d`` the gap shrinks again (or vanishes to rounding).

- :func:`classify` tells :data:`SMOOTH`, :data:`KINK` and :data:`JUMP` apart at the smallest
  steps, under a :class:`GapRule` (each engine keeps its own numbers).
- :func:`settled` says whether a level is clear of switch points (``directional_derivative``
  only extrapolates settled levels; a level that is neither settled nor a kink is unsettled).
- :func:`one_sided_limits` extrapolates both one-sided quotients to first order for a kink's
  subgradient interval (halving steps).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from gradcheck import status
from gradcheck.oracles.noise import level_noise
from gradcheck.oracles.steps import Quotients
from gradcheck.tolerances import (
    DIRECTIONAL_GAP_RELATIVE_FLOOR,
    FD_GAP_RELATIVE_FLOOR,
    GAP_NOISE_ROUNDING_FACTOR,
)

SMOOTH = "smooth"
KINK = status.KINK
JUMP = "jump"


def kink_persistence(ratio: float) -> float:
    """The share of the previous one-sided gap the last gap must keep to read as a kink, for
    steps divided by ``ratio``: halfway between what a smooth gap keeps (``1/ratio``, it
    shrinks with the step) and what a kink's keeps (all of it). 0.75 for halving steps
    (FiniteDifference), 0.55 for steps divided by 10 (directional_derivative)."""
    return (1.0 + 1.0 / ratio) / 2.0


FD_KINK_PERSISTENCE = kink_persistence(2.0)
"""FiniteDifference (halving steps): 0.75."""

DIRECTIONAL_KINK_PERSISTENCE = kink_persistence(10.0)
"""directional_derivative (steps divided by 10): 0.55; it was 0.5 before the engines shared
this rule, which no model check, test or battery entry tells apart."""

FD_JUMP_GAP_GROWTH = 1.5
"""FiniteDifference: a jump when the last gap is more than this times the previous one."""

FD_JUMP_CENTRAL_GROWTH = 1.8
"""FiniteDifference: a jump when the central quotient grows by more than this at each of the
last two halvings (a jump's grows by 2)."""

SHRINK_WINDOW = (0.5, 2.0)
"""A gap shrinks with the step when ``gap / previous gap`` lies in this window times
``1 / ratio`` (same sign)."""


@dataclass(frozen=True)
class GapRule:
    """How one engine reads the one-sided gap.

    A gap is significant above ``noise_factor * rounding + relative_floor * max(|F|, |B|)`` of
    the last level; ``previous_significant`` also asks it of the previous level's gap (against
    the same noise). Significant and more than ``jump_growth`` times the previous gap: a jump;
    more than ``kink_persistence`` times: a kink. ``central_growth`` (None: off) also calls a
    jump when the central quotient grows by that factor at each of the last two steps.
    """

    relative_floor: float
    kink_persistence: float
    noise_factor: float = GAP_NOISE_ROUNDING_FACTOR
    previous_significant: bool = False
    jump_growth: float | None = None
    central_growth: float | None = None

    def noise(self, level: Quotients) -> float:
        """The level's gap noise floor."""
        return level_noise(level, self.noise_factor, self.relative_floor)


FD_GAP_RULE = GapRule(
    relative_floor=FD_GAP_RELATIVE_FLOOR,
    kink_persistence=FD_KINK_PERSISTENCE,
    previous_significant=True,
    jump_growth=FD_JUMP_GAP_GROWTH,
    central_growth=FD_JUMP_CENTRAL_GROWTH,
)
"""FiniteDifference's reading: smooth, kink or jump."""

DIRECTIONAL_GAP_RULE = GapRule(
    relative_floor=DIRECTIONAL_GAP_RELATIVE_FLOOR,
    kink_persistence=DIRECTIONAL_KINK_PERSISTENCE,
)
"""directional_derivative's reading at its default ratio of 10: it has no jump class (a jump
reads as a kink)."""


def directional_gap_rule(ratio: float) -> GapRule:
    """directional_derivative's reading for steps divided by ``ratio``."""
    if ratio == 10.0:
        return DIRECTIONAL_GAP_RULE
    return dataclasses.replace(DIRECTIONAL_GAP_RULE, kink_persistence=kink_persistence(ratio))


def classify(levels: Sequence[Quotients], rule: GapRule) -> str:
    """:data:`SMOOTH`, :data:`KINK` or :data:`JUMP` from the last two (three with
    ``central_growth``) levels."""
    last, previous = levels[-1], levels[-2]
    noise = rule.noise(last)
    last_gap, previous_gap = last.gap, previous.gap
    significant = last_gap > noise and (not rule.previous_significant or previous_gap > noise)
    if rule.jump_growth is not None and significant and last_gap > rule.jump_growth * previous_gap:
        return JUMP
    if rule.central_growth is not None and len(levels) >= 3:
        g, before = rule.central_growth, levels[-3]
        growing = abs(last.central) > g * abs(previous.central) > g**2 * abs(before.central)
        if growing and abs(last.central - previous.central) > noise:
            return JUMP
    if significant and last_gap > rule.kink_persistence * previous_gap:
        return KINK
    return SMOOTH


def settled(
    level: Quotients, previous: Quotients, ratio: float, rule: GapRule, margin: float
) -> bool:
    """No switch point within ``level.step`` of 0.

    The gap shrinks in proportion to the step (within :data:`SHRINK_WINDOW`, same sign), or lies
    within noise. When the previous gap was significant, a gap that vanished to noise counts
    only if the previous one stood ``margin`` times above this level's noise: several switch
    points at the point itself can keep a gap that rounding at a tiny step hides.
    """
    noise = rule.noise(level)
    signed_previous = previous.signed_gap
    shrink = level.signed_gap / signed_previous if signed_previous else math.inf
    low, high = SHRINK_WINDOW
    proportional = low / ratio <= shrink <= high / ratio
    if previous.gap > rule.noise(previous):
        return proportional or (level.gap <= noise and previous.gap >= margin * noise)
    return level.gap <= noise or proportional


def one_sided_limits(last: Quotients, previous: Quotients) -> tuple[float, float, float]:
    """``(left, right, spread)``: both one-sided quotients extrapolated to first order from two
    halving steps (``2*Q(h) - Q(2h)``), and how far each moved."""
    right = 2.0 * last.forward - previous.forward
    left = 2.0 * last.backward - previous.backward
    spread = max(abs(right - last.forward), abs(left - last.backward))
    return left, right, spread
