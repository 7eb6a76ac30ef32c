"""Frozen, JSON-serialisable record of a distributed check: :class:`DistributedCheckResult`,
what :func:`gradcheck.check_distributed` returns, with one
:class:`~gradcheck.reference_results.ReferenceRow` per parameter (the gradient the ranks ended
with against the single-process float64 reference) and a :class:`RankProblem` for each rank
that failed, hung, or ended with a gradient other than rank 0's."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from gradcheck.jsonsafe import from_json_float as _from_json_float
from gradcheck.jsonsafe import json_safe as _json_safe
from gradcheck.reference_results import ReferenceRow, ReferenceRows, rows_table

DISTRIBUTED_KIND = "distributed"
"""The ``kind`` of a distributed check's dict among the report's low-precision, compiled and
distributed checks."""


@dataclass(frozen=True)
class RankProblem:
    """One rank's problem: it did not finish (``tensor`` is ``""``: it raised, died, hung or
    was stopped, and what it was doing), or its gradient of ``tensor`` is not rank 0's."""

    rank: int
    tensor: str
    problem: str


@dataclass(frozen=True)
class DistributedCheckResult(ReferenceRows):
    """The outcome of :func:`gradcheck.check_distributed`.

    ``status`` is ``"passed"`` (every rank finished, all hold the same gradients, and every
    row passed the gate), ``"failed"`` (a rank failed or disagrees with rank 0, a row failed,
    or the reference's own float64 gradient failed its check), ``"incomplete"`` (nothing failed
    but a row could not be judged) or ``"skipped"`` (this machine cannot run the requested
    backend or strategy: ``skipped_reason`` says why; never a pass). ``dtype`` is the step's
    dtype (the model's) and ``communication_dtype`` the one gradients travel in (lower with a
    compression hook); the gate's floor is the lower of the two's. ``startup_s`` is the time
    until every rank had joined the process group (process start and ``import torch``
    included) and ``duration_s`` the whole check's.
    """

    passed: bool
    status: str
    model: str
    strategy: str
    backend: str
    world_size: int
    accumulation_steps: int
    reduction: str
    loss: str
    step: str
    comm_hook: str
    dtype: str
    communication_dtype: str
    device: str
    mode: str
    multiplier: float
    seed: int
    reference_check: str
    reference_note: str
    rows: tuple[ReferenceRow, ...]
    rank_problems: tuple[RankProblem, ...]
    skipped_reason: str
    message: str
    reproduce: str
    startup_s: float
    duration_s: float

    def table(self) -> str:
        """The rows as :meth:`gradcheck.ReferenceCheckResult.table` prints them (``spread``:
        the largest difference between a rank's gradient and rank 0's), then the rank
        problems."""
        lines = [rows_table(self.rows)]
        lines += [
            f"rank {p.rank}{' ' + p.tensor if p.tensor else ''}: {p.problem}"
            for p in self.rank_problems
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite floats become 'nan', 'inf', '-inf'). Besides the
        fields it has what the report's section of reference checks reads (``kind``,
        ``label``, ``implementation``, ``reference``, ``compiled``)."""
        data = _json_safe(
            {
                f.name: getattr(self, f.name)
                for f in fields(self)
                if f.name not in ("rows", "rank_problems")
            }
        )
        data["rows"] = [row.to_dict() for row in self.rows]
        data["rank_problems"] = [asdict(problem) for problem in self.rank_problems]
        accumulation = (
            f", {self.accumulation_steps} micro-batches" if self.accumulation_steps > 1 else ""
        )
        hook = f", comm hook {self.comm_hook}" if self.comm_hook else ""
        data.update(
            kind=DISTRIBUTED_KIND,
            label=(
                f"{self.model}: {self.strategy.upper()} on {self.world_size} {self.backend} "
                f"ranks{accumulation}{hook} ({self.dtype})"
            ),
            implementation=f"{self.model} under {self.strategy.upper()}",
            reference=f"{self.model}, one process, whole batch",
            compiled="",
        )
        return data

    def to_json(self, **kwargs: Any) -> str:
        """The result as a JSON string; keyword arguments go to :func:`json.dumps`."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DistributedCheckResult:
        """Rebuild a result from :meth:`to_dict` output (for example a saved JSON report)."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        for key in ("multiplier", "startup_s", "duration_s"):
            values[key] = _from_json_float(values[key])
        values["rows"] = tuple(ReferenceRow.from_dict(row) for row in values["rows"])
        values["rank_problems"] = tuple(RankProblem(**p) for p in values["rank_problems"])
        return cls(**values)


__all__ = ["DistributedCheckResult", "RankProblem"]
