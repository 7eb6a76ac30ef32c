"""Turn the events of :mod:`gradcheck.ops.worker` into rows, whichever process sent them, and
fill in what an interrupted sample did not finish (a worker killed at the hard limit, or one
that died)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gradcheck.ops import classify
from gradcheck.ops.results import OpRow, Outcome, SkippedOp
from gradcheck.ops.sides import SIDES

Progress = Callable[[str, int, int, str, bool], None]
"""``progress(section, done, total, label, ok)``: the shape ``gradcheck run`` uses."""

SECTION = "ops"
NOT_RUN = "not run"
"""The status of a side that never ran because an earlier side was interrupted."""


@dataclass
class _Partial:
    meta: dict[str, Any]
    sides: dict[str, dict[str, Any]] = field(default_factory=dict)


class Collector:
    """Rows in the making, keyed by (op key, sample index); finished rows in database order."""

    def __init__(self, progress: Progress | None = None) -> None:
        self.progress = progress
        self.order: dict[str, int] = {}
        self.names: dict[str, tuple[str, str, bool]] = {}
        self.partial: dict[tuple[str, int], _Partial] = {}
        self.rows: list[OpRow] = []
        self.skipped: list[SkippedOp] = []
        self.done = 0

    def announce(self, selection: list[tuple[str, str, str, str, bool]]) -> list[str]:
        """Record the selection ``(key, name, variant, skip, expected_failure)``; returns the
        keys to run (torch's own skips are recorded as skipped)."""
        to_run = []
        for position, (key, name, variant, skip, expected_failure) in enumerate(selection):
            self.order[key] = position
            self.names[key] = (name, variant, expected_failure)
            if skip:
                self.skipped.append(SkippedOp(key, skip))
            else:
                to_run.append(key)
        self.total = len(to_run)
        return to_run

    def handle(self, event: tuple) -> None:
        """Take one event (``phase`` events are the pool's business and are ignored here)."""
        kind, key = event[0], event[1]
        if kind == "sample":
            self.partial[(key, event[2])] = _Partial(dict(event[3]))
        elif kind == "side":
            self.partial[(key, event[2])].sides[event[3]] = dict(event[4])
            if len(self.partial[(key, event[2])].sides) == len(SIDES):
                self._finish(key, event[2])
        elif kind == "op_error":
            self.skipped.append(SkippedOp(key, str(event[2])))
        elif kind == "op_end":
            self.op_done(key)

    def interrupt(
        self, key: str, index: int | None, phase: str, status: str, why: str, elapsed: float
    ) -> None:
        """A worker stopped ``elapsed`` seconds into ``phase`` of sample ``index``: that side
        gets ``status`` (``timeout`` or ``error``) with ``why``, the sides after it are not
        run."""
        if index is None:
            self.skipped.append(SkippedOp(key, f"generating samples: {why}"))
            return
        partial = self.partial.setdefault((key, index), _Partial({"shapes": [], "description": ""}))
        for side in SIDES:
            if side not in partial.sides:
                reached = side == phase
                partial.sides[side] = {
                    "status": status if reached else NOT_RUN,
                    "time_s": elapsed if reached else 0.0,
                    "message": why if reached else f"not run: {phase} was interrupted",
                }
        self._finish(key, index)

    def op_done(self, key: str) -> None:
        """An op finished: report progress."""
        self.done += 1
        if self.progress is not None:
            ok = not any(row.unexplained for row in self.rows if row.key == key)
            self.progress(SECTION, self.done, self.total, key, ok)

    def _finish(self, key: str, index: int) -> None:
        partial = self.partial.pop((key, index))
        name, variant, expected_failure = self.names[key]
        data = {
            "op": name,
            "expected_failure": expected_failure,
            **{side: partial.sides[side] for side in SIDES},
        }
        category, reason, unexplained = classify.explain(data)
        self.rows.append(
            OpRow(
                key=key,
                op=name,
                variant=variant,
                sample=index,
                shapes=tuple(tuple(s) for s in partial.meta.get("shapes", ())),
                description=str(partial.meta.get("description", "")),
                ours=Outcome.from_dict(partial.sides["ours"]),
                torch_slow=Outcome.from_dict(partial.sides["torch_slow"]),
                torch_fast=Outcome.from_dict(partial.sides["torch_fast"]),
                category=category,
                reason=reason,
                unexplained=unexplained,
                expected_failure=expected_failure,
            )
        )

    def sorted_rows(self) -> tuple[OpRow, ...]:
        """The rows in database order, samples in order."""
        return tuple(sorted(self.rows, key=lambda r: (self.order.get(r.key, 0), r.sample)))
