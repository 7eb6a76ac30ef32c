"""Frozen, JSON-serialisable records of whole-model checks: one row per parameter tensor.

:class:`ModuleCheckResult` is what :func:`gradcheck.check_module` returns and
:class:`DeviceParityResult` what :func:`gradcheck.check_device_parity` returns. Both round-trip
through ``to_dict``/``from_dict`` so a report can be rendered from a saved run.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from gradcheck.errors import GradientMismatch
from gradcheck.jsonsafe import from_json_float as _from_json_float
from gradcheck.jsonsafe import json_safe as _json_safe
from gradcheck.status import FAILED, PASSED
from gradcheck.tolerances import Tolerance

_ROW_FLOATS = ("autograd", "oracle", "relative_error", "error_estimate", "allowed", "step")


@dataclass(frozen=True)
class ModuleRow:
    """One parameter tensor (or input) of a module check.

    ``autograd`` and ``oracle`` are the directional derivatives ``grad . u`` of the worst
    direction (largest error relative to what was allowed); ``relative_error`` is
    ``|autograd - oracle| / |oracle|``, ``error_estimate`` the oracle's own error and ``allowed``
    the tolerance that applied. ``rule`` and ``step`` say which difference quotient decided it.
    ``directions`` counts the directions decided, ``attempts`` those tried (a direction that
    crossed a switch point is replaced by a fresh one). ``status`` is ``"passed"``,
    ``"failed"``, ``"kink-affected"`` or ``"inconclusive"``; ``note`` says why when not passed.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    numel: int
    status: str
    autograd: float
    oracle: float
    relative_error: float
    error_estimate: float
    allowed: float
    rule: str
    step: float
    directions: int
    attempts: int
    note: str = ""

    @property
    def passed(self) -> bool:
        """True only when every requested direction was decided and agreed."""
        return self.status == PASSED

    @property
    def tolerance_used(self) -> float:
        """``|autograd - oracle| / allowed``: above 1 fails (NaN when undecided). Clearer than
        the relative error for tensors whose true derivative is about 0."""
        if not math.isfinite(self.oracle) or not self.allowed > 0:
            return math.nan
        return abs(self.autograd - self.oracle) / self.allowed

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return _json_safe(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModuleRow:
        """Rebuild a row from :meth:`to_dict` output."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["shape"] = tuple(values["shape"])
        for key in _ROW_FLOATS:
            values[key] = _from_json_float(values[key])
        return cls(**values)


@dataclass(frozen=True)
class ModuleCheckResult:
    """The outcome of :func:`gradcheck.check_module`: one :class:`ModuleRow` per tensor.

    Rows are in the order forward first uses each tensor (inputs first), so the first rows are
    the furthest from the output. ``passed`` is True only when every row passed; ``status`` is
    ``"passed"``, ``"failed"`` (some row failed) or ``"incomplete"`` (none failed, some
    undecided).
    ``likely_culprit`` names the failing row closest to the output: a wrong gradient entering
    there spoils every row upstream of it, so the bug is at that row or between it and the next
    row downstream.
    """

    passed: bool
    status: str
    module: str
    dtype: str
    device: str
    mode: str
    loss: str
    seed: int
    directions: int
    tolerance: Tolerance
    rows: tuple[ModuleRow, ...]
    likely_culprit: str | None
    message: str
    reproduce: str
    evaluations: int
    duration_s: float

    @property
    def failed_rows(self) -> tuple[ModuleRow, ...]:
        """The rows whose gradient disagreed with the oracle."""
        return tuple(row for row in self.rows if row.status == FAILED)

    def row(self, name: str) -> ModuleRow:
        """The row of parameter ``name`` (or ``"input"``, ``"input[1]"``)."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no row named {name!r}; rows: {', '.join(r.name for r in self.rows)}")

    def raise_for_failure(self) -> ModuleCheckResult:
        """Raise :class:`gradcheck.GradientMismatch` when a row failed; return self otherwise."""
        if self.status == FAILED:
            raise GradientMismatch(self.message, self)
        return self

    def table(self) -> str:
        """A plain-text table, one line per row: status, name, shape, the two directional
        derivatives, relative error, the oracle's error estimate and the share of the
        tolerance used."""
        header = (
            f"{'status':<13} {'tensor':<34} {'shape':<16} {'autograd':>14} "
            f"{'oracle':>14} {'rel err':>8} {'+/-':>8} {'used':>6}"
        )
        lines = [header, "-" * len(header)]
        for row in self.rows:
            shape = "x".join(str(s) for s in row.shape) or "scalar"
            lines.append(
                f"{row.status:<13} {row.name[:34]:<34} {shape[:16]:<16} {row.autograd:>14.8g} "
                f"{row.oracle:>14.8g} {row.relative_error:>8.1e} {row.error_estimate:>8.1e} "
                f"{row.tolerance_used:>6.0%}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite floats become 'nan', 'inf', '-inf')."""
        data = _json_safe({f.name: getattr(self, f.name) for f in fields(self) if f.name != "rows"})
        data["tolerance"] = self.tolerance.to_dict()
        data["rows"] = [row.to_dict() for row in self.rows]
        return data

    def to_json(self, **kwargs: Any) -> str:
        """The result as a JSON string; keyword arguments go to :func:`json.dumps`."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModuleCheckResult:
        """Rebuild a result from :meth:`to_dict` output (for example a saved JSON report)."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["tolerance"] = Tolerance(**values["tolerance"])
        values["rows"] = tuple(ModuleRow.from_dict(row) for row in values["rows"])
        return cls(**values)


@dataclass(frozen=True)
class ParityRow:
    """One tensor's gradient on ``device`` against the CPU float64 reference.

    ``relative_error`` is normwise, ``||g_device - g_ref|| / ||g_ref||``; ``allowed`` the
    tolerance for the device's dtype.
    """

    name: str
    device: str
    shape: tuple[int, ...]
    max_abs_error: float
    relative_error: float
    allowed: float
    passed: bool

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParityRow:
        """Rebuild a row from its dict."""
        values = dict(data)
        values["shape"] = tuple(values["shape"])
        for key in ("max_abs_error", "relative_error", "allowed"):
            values[key] = _from_json_float(values[key])
        return cls(**values)


@dataclass(frozen=True)
class DeviceParityResult:
    """The outcome of :func:`gradcheck.check_device_parity`.

    ``status`` is ``"passed"``, ``"failed"`` or ``"skipped"`` (no requested device other than
    the reference could run; ``skipped`` gives each missing device with the reason).
    """

    passed: bool
    status: str
    module: str
    dtype: str
    mode: str
    reference: str
    devices: tuple[str, ...]
    rows: tuple[ParityRow, ...]
    skipped: tuple[tuple[str, str], ...]
    message: str
    seed: int
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return _json_safe(asdict(self))

    def to_json(self, **kwargs: Any) -> str:
        """The result as a JSON string; keyword arguments go to :func:`json.dumps`."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceParityResult:
        """Rebuild a result from :meth:`to_dict` output."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["devices"] = tuple(values["devices"])
        values["rows"] = tuple(ParityRow.from_dict(row) for row in values["rows"])
        values["skipped"] = tuple(tuple(pair) for pair in values["skipped"])
        return cls(**values)


__all__ = [
    "DeviceParityResult",
    "ModuleCheckResult",
    "ModuleRow",
    "ParityRow",
]
