"""Frozen, JSON-serialisable records of low-precision and compiled checks.

:class:`ReferenceCheckResult` is what :func:`gradcheck.check_against_reference` and
:func:`gradcheck.check_compiled` return: one :class:`ReferenceRow` per forward output, per
differentiated input and per parameter. Both round-trip through ``to_dict``/``from_dict`` so a
report can be rendered from a saved run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from gradcheck.errors import GradientMismatch
from gradcheck.jsonsafe import from_json_float as _from_json_float
from gradcheck.jsonsafe import json_safe as _json_safe
from gradcheck.status import FAILED, INCONCLUSIVE, PASSED

_ROW_FLOATS = (
    "candidate_error",
    "baseline_error",
    "ratio",
    "allowed",
    "candidate_elementwise",
    "baseline_elementwise",
    "ratio_elementwise",
    "allowed_elementwise",
    "floor",
    "spread",
    "golden_norm",
)


@dataclass(frozen=True)
class ReferenceRow:
    """One tensor: a forward output (``kind="output"``), the gradient of an input
    (``"input"``) or of a parameter (``"parameter"``).

    ``candidate_error`` is the implementation's normwise error against the float64 golden value,
    ``baseline_error`` the reference's own in the same dtype, ``ratio`` the first over the
    second and ``allowed`` the gate's limit (multiplier x max(baseline, floor)); the
    ``*_elementwise`` fields are the same for the elementwise measure
    (:mod:`gradcheck.reference.gate`). ``spread`` is the largest normwise difference between
    the implementation's repeated runs (0 when they agree bit for bit). ``compared`` counts the
    elements compared and ``left_out`` those whose golden value is not finite. ``status`` is
    ``"passed"``, ``"failed"`` or ``"inconclusive"``; ``note`` says why when not passed.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    dtype: str
    status: str
    candidate_error: float
    baseline_error: float
    ratio: float
    allowed: float
    candidate_elementwise: float
    baseline_elementwise: float
    ratio_elementwise: float
    allowed_elementwise: float
    floor: float
    spread: float
    golden_norm: float
    compared: int
    left_out: int
    note: str = ""

    @property
    def passed(self) -> bool:
        """True when the gate held for both measures."""
        return self.status == PASSED

    @property
    def tolerance_used(self) -> float:
        """The larger of the two measures' share of their limits: above 1 fails."""
        shares = [
            error / allowed
            for error, allowed in (
                (self.candidate_error, self.allowed),
                (self.candidate_elementwise, self.allowed_elementwise),
            )
            if allowed > 0
        ]
        return max(shares) if shares else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return _json_safe(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceRow:
        """Rebuild a row from :meth:`to_dict` output."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["shape"] = tuple(values["shape"])
        for key in _ROW_FLOATS:
            values[key] = _from_json_float(values[key])
        return cls(**values)


_Result = TypeVar("_Result", bound="ReferenceRows")


class ReferenceRows:
    """What every result made of :class:`ReferenceRow` rows offers: the failed and the
    inconclusive rows, a row by name, and ``raise_for_failure``."""

    rows: tuple[ReferenceRow, ...]
    status: str
    message: str

    @property
    def failed_rows(self) -> tuple[ReferenceRow, ...]:
        """The rows the gate failed."""
        return tuple(row for row in self.rows if row.status == FAILED)

    @property
    def inconclusive_rows(self) -> tuple[ReferenceRow, ...]:
        """The rows that could not be judged (ill-conditioned, or an unverified reference)."""
        return tuple(row for row in self.rows if row.status == INCONCLUSIVE)

    def row(self, name: str) -> ReferenceRow:
        """The row named ``name`` (``"output"``, ``"x"``, ``"0.weight"``)."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no row named {name!r}; rows: {', '.join(r.name for r in self.rows)}")

    def raise_for_failure(self: _Result) -> _Result:
        """Raise :class:`gradcheck.GradientMismatch` when the check failed; return self
        otherwise."""
        if self.status == FAILED:
            raise GradientMismatch(self.message, self)
        return self


@dataclass(frozen=True)
class ReferenceCheckResult(ReferenceRows):
    """The outcome of :func:`gradcheck.check_against_reference` or
    :func:`gradcheck.check_compiled`.

    ``status`` is ``"passed"`` (every row passed), ``"failed"`` (a row failed, or the
    reference's own float64 gradient failed its check: ``reference_check`` says which) or
    ``"incomplete"`` (none failed, some row inconclusive). ``reference_check`` is the status of
    the reference's own float64 gradient check (``"passed"``, ``"failed"``, ``"inconclusive"``
    or ``"skipped"``), ``reference_note`` its first line when not passed. ``implementation`` and
    ``reference`` name the two sides; ``compiled`` is the backend for check_compiled (else
    ``""``) and ``first_call_s`` the time of the implementation's first forward and backward
    (compilation included). ``nondeterministic`` is True when repeated runs of the
    implementation differed anywhere.
    """

    passed: bool
    status: str
    implementation: str
    reference: str
    dtype: str
    device: str
    compiled: str
    multiplier: float
    repeats: int
    deterministic: bool
    nondeterministic: bool
    seed: int
    reference_check: str
    reference_note: str
    rows: tuple[ReferenceRow, ...]
    message: str
    reproduce: str
    first_call_s: float
    duration_s: float

    def table(self) -> str:
        """A plain-text table, one line per row: status, tensor, shape, the implementation's
        and the reference's normwise errors against float64, their ratio, the limit, the
        elementwise errors and the spread between repeats."""
        return rows_table(self.rows)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite floats become 'nan', 'inf', '-inf')."""
        data = _json_safe({f.name: getattr(self, f.name) for f in fields(self) if f.name != "rows"})
        data["rows"] = [row.to_dict() for row in self.rows]
        return data

    def to_json(self, **kwargs: Any) -> str:
        """The result as a JSON string; keyword arguments go to :func:`json.dumps`."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceCheckResult:
        """Rebuild a result from :meth:`to_dict` output (for example a saved JSON report)."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        for key in ("multiplier", "first_call_s", "duration_s"):
            values[key] = _from_json_float(values[key])
        values["rows"] = tuple(ReferenceRow.from_dict(row) for row in values["rows"])
        return cls(**values)


def rows_table(rows: tuple[ReferenceRow, ...]) -> str:
    """Reference rows as a plain-text table (see :meth:`ReferenceCheckResult.table`)."""
    header = (
        f"{'status':<13} {'kind':<9} {'tensor':<30} {'shape':<14} {'impl err':>9} "
        f"{'ref err':>9} {'ratio':>7} {'allowed':>9} {'impl elem':>9} {'ref elem':>9} "
        f"{'spread':>8}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        shape = "x".join(str(s) for s in row.shape) or "scalar"
        lines.append(
            f"{row.status:<13} {row.kind:<9} {row.name[:30]:<30} {shape[:14]:<14} "
            f"{row.candidate_error:>9.2e} {row.baseline_error:>9.2e} {row.ratio:>7.2f} "
            f"{row.allowed:>9.2e} {row.candidate_elementwise:>9.2e} "
            f"{row.baseline_elementwise:>9.2e} {row.spread:>8.1e}"
        )
    return "\n".join(lines)


__all__ = ["ReferenceCheckResult", "ReferenceRow", "rows_table"]
