"""Frozen, JSON-serialisable records of an ops run: :class:`Outcome` (one side on one
sample), :class:`OpRow` (one sample, its three outcomes and its class), :class:`SkippedOp` and
:class:`OpsResult` (the run, with its summary)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from gradcheck.jsonsafe import from_json_float, json_safe
from gradcheck.ops import classify
from gradcheck.ops.worker import Settings


@dataclass(frozen=True)
class Outcome:
    """One side's outcome on one sample: ``status`` is passed, failed, inconclusive or skipped
    (ours), error or timeout (either side); ``message`` is its first lines. The counts exist for
    our side only."""

    status: str
    time_s: float
    message: str = ""
    max_rel_error: float | None = None
    checked: int | None = None
    inconclusive: int | None = None
    kinks: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        """An outcome from a dict (its unknown keys ignored, JSON's "nan" read back)."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        if values.get("max_rel_error") is not None:
            values["max_rel_error"] = float(from_json_float(values["max_rel_error"]))
        return cls(**values)


@dataclass(frozen=True)
class OpRow:
    """One sample of one op: what it was, the three outcomes, and what they add up to."""

    key: str
    op: str
    variant: str
    sample: int
    shapes: tuple[tuple[int, ...], ...]
    description: str
    ours: Outcome
    torch_slow: Outcome
    torch_fast: Outcome
    category: str
    reason: str
    unexplained: bool
    expected_failure: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return json_safe(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OpRow:
        """A row from :meth:`to_dict` output."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["shapes"] = tuple(tuple(s) for s in values["shapes"])
        for side in ("ours", "torch_slow", "torch_fast"):
            values[side] = Outcome.from_dict(values[side])
        return cls(**values)


@dataclass(frozen=True)
class SkippedOp:
    """An op that was selected but not checked, and why (torch's own skip, no samples, ...)."""

    key: str
    reason: str


@dataclass(frozen=True)
class OpsResult:
    """The outcome of :func:`gradcheck.check_ops`: every row in database order, the skipped
    ops, the settings, how long it took, and whether the checks ran in worker processes.

    ``summary`` counts rows per class and lists every disagreement first; ``passed`` is True
    when nothing is unexplained (a disagreement without a known reason, or an exception from
    check_function)."""

    settings: Settings
    rows: tuple[OpRow, ...]
    skipped: tuple[SkippedOp, ...]
    duration_s: float
    torch_version: str
    isolated: bool

    @property
    def summary(self) -> dict[str, Any]:
        """:func:`gradcheck.ops.classify.summarise` of the rows."""
        return classify.summarise([row.to_dict() for row in self.rows], self.skipped)

    @property
    def passed(self) -> bool:
        """No unexplained disagreement or exception, and at least one sample checked."""
        return bool(self.rows) and not any(row.unexplained for row in self.rows)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the fields, plus ``summary`` and ``passed``."""
        data = json_safe(asdict(self))
        data["summary"] = json_safe(self.summary)
        data["passed"] = self.passed
        return data

    def to_json(self, **kwargs: Any) -> str:
        """The result as a JSON string; keyword arguments go to :func:`json.dumps`."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OpsResult:
        """Rebuild a result from :meth:`to_dict` output."""
        settings = dict(data["settings"])
        settings["patterns"] = tuple(settings["patterns"])
        return cls(
            settings=Settings(**settings),
            rows=tuple(OpRow.from_dict(row) for row in data["rows"]),
            skipped=tuple(SkippedOp(**s) for s in data["skipped"]),
            duration_s=float(data["duration_s"]),
            torch_version=str(data["torch_version"]),
            isolated=bool(data["isolated"]),
        )
