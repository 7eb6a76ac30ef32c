"""Long values summarised for the page: a vector shows its first numbers and its length, a
list of judges its worst entry; the full data stays one click away (the template puts it in a
``<details>``). Plain data in, plain data out: the template escapes every text."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from gradcheck.report.document import as_float
from gradcheck.status import FAILED, PASSED

SHOWN_VALUES = 3
"""Numbers of a vector shown before the rest is folded away."""
SHOWN_JUDGES = 3
"""Judges of a claim listed in full; above this the worst one stands for them."""


def vector_text(values: Sequence[Any] | None, formatter: Callable[[Any], str] = str) -> dict:
    """``{"short": ..., "full": ...}`` for a vector: ``short`` is the whole vector when it has
    at most :data:`SHOWN_VALUES` numbers, else its first ones and how many there are; ``full``
    is the whole vector when ``short`` is not (else ``""``). ``-`` for no vector."""
    if values is None:
        return {"short": "-", "full": ""}
    texts = [formatter(value) for value in values]
    whole = ", ".join(texts)
    if len(texts) <= SHOWN_VALUES:
        return {"short": whole, "full": ""}
    return {"short": f"{', '.join(texts[:SHOWN_VALUES])}, … ({len(texts)} values)", "full": whole}


def _closeness(row: dict[str, Any]) -> float:
    """How close a judge's worst element came to its tolerance (NaN: unknown)."""
    error, allowed = as_float(row.get("abs_error")), as_float(row.get("allowed"))
    return error / allowed if allowed > 0 and math.isfinite(error) else math.nan


def worst_judges(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The judges to list without a click: all of them up to :data:`SHOWN_JUDGES`, else every
    one that did not pass, or (all passed) the one closest to its tolerance."""
    if len(rows) <= SHOWN_JUDGES:
        return list(rows)
    failing = [row for row in rows if row.get("status") != PASSED]
    if failing:
        return sorted(failing, key=lambda row: row.get("status") != FAILED)[:SHOWN_JUDGES]
    known = [row for row in rows if not math.isnan(_closeness(row))]
    return [max(known, key=_closeness)] if known else [rows[0]]
