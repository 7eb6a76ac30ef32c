"""Frozen, JSON-serialisable records of what a check found.

A :class:`CheckResult` round-trips through ``to_dict``/``from_dict`` (and ``to_json``), so a report
can be rendered from saved runs without re-running anything.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from gradcheck.errors import GradientMismatch, InconclusiveCheck, SemanticsViolation
from gradcheck.jsonsafe import from_json_float as _from_json_float
from gradcheck.jsonsafe import json_safe as _json_safe
from gradcheck.status import CLAIM_MARKS, FAILED, INCONCLUSIVE, PASSED, SKIPPED
from gradcheck.tolerances import Tolerance


@dataclass(frozen=True)
class ElementReport:
    """One compared element: an input entry (``index``) or a random direction (``direction``).

    ``lower``/``upper`` are set for an element on a kink: the interval of valid subgradients.
    ``allowed`` is the tolerance that applied to this element. ``output`` names the output whose
    derivative disagrees most at this element, when fn has several judged outputs
    (``"output[1]"``), else None.
    """

    input: str | None
    index: tuple[int, ...] | None
    direction: int | None
    point: float | None
    autograd: float
    oracle: float
    error_estimate: float
    abs_error: float
    allowed: float
    lower: float | None = None
    upper: float | None = None
    output: str | None = None

    @property
    def where(self) -> str:
        """Human-readable location: ``x[3]``, ``w[0, 1]`` or ``direction 2``."""
        if self.direction is not None:
            return f"direction {self.direction}"
        inside = ", ".join(str(i) for i in self.index or ())
        return f"{self.input}[{inside}]" if inside else str(self.input)


@dataclass(frozen=True)
class Note:
    """An element the oracle marked: on a kink (valid subgradient) or inconclusive (why)."""

    where: str
    reason: str


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one gradient check against one oracle.

    ``status`` is ``"passed"``, ``"failed"`` (some element is outside its tolerance, or
    backward is not deterministic), ``"inconclusive"`` (the oracle could decide no element; this
    is not a gradient bug) or ``"skipped"`` (nothing to check: every differentiable input is
    empty). ``passed`` is True only for ``"passed"``. ``worst`` is the element furthest outside
    (or closest to) its tolerance. ``kinks`` lists elements on non-differentiable points where
    autograd returned a valid subgradient; ``inconclusive`` lists elements the oracle could not
    judge, with the reason; ``left_out`` lists the outputs and inputs that were not judged at
    all or judged through a stand-in, and why (an output autograd does not differentiate, an
    empty input, a complex output judged as its real and imaginary parts, fn evaluated in its
    own dtype).
    """

    passed: bool
    status: str
    name: str
    oracle: str
    dtype: str
    device: str
    mode: str
    checked: int
    failed: int
    max_abs_error: float
    max_rel_error: float
    tolerance: Tolerance
    error_estimate: float
    worst: ElementReport | None
    duration_s: float
    seed: int
    message: str
    reproduce: str
    kinks: tuple[Note, ...] = field(default_factory=tuple)
    inconclusive: tuple[Note, ...] = field(default_factory=tuple)
    left_out: tuple[Note, ...] = field(default_factory=tuple)
    parts: tuple[CheckResult, ...] = field(default_factory=tuple)
    """For a check of several derivatives (``order=2``, ``mode="both"``): one result per
    derivative checked, named after it (``"VJP"``, ``"JVP"``, ``"VJP of VJP"``); empty
    otherwise."""

    def raise_for_failure(self) -> CheckResult:
        """Raise :class:`GradientMismatch` if failed, :class:`InconclusiveCheck` if nothing was
        decided (inconclusive, or skipped: no element to check); return ``self`` otherwise so
        calls can chain."""
        if self.status == FAILED:
            raise GradientMismatch(self.message, self)
        if self.status in (INCONCLUSIVE, SKIPPED):
            raise InconclusiveCheck(self.message, self)
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite floats become the strings 'inf', '-inf', 'nan')."""
        return _json_safe(asdict(self))

    def to_json(self, **kwargs: Any) -> str:
        """The result as a JSON string; keyword arguments go to :func:`json.dumps`."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        """Rebuild a result from :meth:`to_dict` output (for example a saved JSON report)."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["tolerance"] = Tolerance(**values["tolerance"])
        worst = values.get("worst")
        if worst is not None:
            worst = {
                k: _from_json_float(v) if k in _ELEMENT_FLOATS else v for k, v in worst.items()
            }
            if worst.get("index") is not None:
                worst["index"] = tuple(worst["index"])
            values["worst"] = ElementReport(**worst)
        for key in ("kinks", "inconclusive", "left_out"):
            values[key] = tuple(Note(**note) for note in values.get(key, ()))
        for key in ("max_abs_error", "max_rel_error", "error_estimate"):
            values[key] = _from_json_float(values[key])
        values["parts"] = tuple(cls.from_dict(part) for part in values.get("parts", ()))
        return cls(**values)


_ELEMENT_FLOATS = frozenset(
    ("point", "autograd", "oracle", "error_estimate", "abs_error", "allowed", "lower", "upper")
)


@dataclass(frozen=True)
class Claim:
    """One statement a scenario or a semantics check proves, with its evidence.

    ``statement`` says what must hold (``"w.grad == 3"``). A numeric claim carries the values as
    its source printed them (``stated``, text), the values measured here (``measured``) and one
    :class:`CheckResult` per judge in ``checks`` (SymPy, finite differences, a reference formula,
    the stated numbers at their printed precision). Any claim carries ``detail``: what was
    observed, in words (a ``grad_fn`` name, the error that was raised).
    """

    statement: str
    passed: bool
    detail: str = ""
    stated: tuple[str, ...] | None = None
    measured: tuple[float, ...] | None = None
    checks: tuple[CheckResult, ...] = ()
    skipped: str = ""

    @property
    def status(self) -> str:
        """``"passed"``, ``"failed"``, or ``"skipped"`` when it could not be judged here
        (``skipped`` says why: a fact of torch outside its known version range)."""
        if self.skipped:
            return SKIPPED
        return PASSED if self.passed else FAILED

    @property
    def failed(self) -> bool:
        """True when the claim was judged and does not hold."""
        return self.status == FAILED

    @classmethod
    def from_checks(
        cls,
        statement: str,
        checks: Sequence[CheckResult],
        *,
        stated: Sequence[str] | None = None,
        measured: Sequence[float] | None = None,
    ) -> Claim:
        """A numeric claim that holds when every check passed; its detail is the first
        failure's message, or every check's summary."""
        failed = [c for c in checks if not c.passed]
        return cls(
            statement=statement,
            passed=not failed,
            detail=failed[0].message if failed else "; ".join(c.message for c in checks),
            stated=None if stated is None else tuple(stated),
            measured=None if measured is None else tuple(measured),
            checks=tuple(checks),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return _json_safe(
            {
                "statement": self.statement,
                "passed": self.passed,
                "detail": self.detail,
                "stated": None if self.stated is None else list(self.stated),
                "measured": None if self.measured is None else list(self.measured),
                "checks": [check.to_dict() for check in self.checks],
                "skipped": self.skipped,
                "status": self.status,
            }
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Claim:
        """Rebuild a claim from :meth:`to_dict` output."""
        measured = data.get("measured")
        stated = data.get("stated")
        return cls(
            statement=data["statement"],
            passed=data["passed"],
            detail=data.get("detail", ""),
            stated=None if stated is None else tuple(stated),
            measured=None if measured is None else tuple(_from_json_float(v) for v in measured),
            checks=tuple(CheckResult.from_dict(c) for c in data.get("checks", ())),
            skipped=data.get("skipped", ""),
        )


def claims_status(claims: Sequence[Claim]) -> str:
    """A set of claims' verdict: failed when one fails, passed when every judged claim holds
    (at least one was judged), skipped when none could be judged (never counted as passed)."""
    if any(claim.failed for claim in claims):
        return FAILED
    if any(claim.status == PASSED for claim in claims):
        return PASSED
    return SKIPPED


@dataclass(frozen=True)
class ScenarioResult:
    """What running one catalog scenario proved: every claim, or why it could not run.

    ``status`` is ``"passed"`` (every claim holds), ``"failed"`` or ``"skipped"`` (``reason`` says
    why, for example torchvision missing); a skipped scenario is never counted as passed.
    """

    id: str
    topic: str
    status: str
    claims: tuple[Claim, ...]
    seed: int
    duration_s: float
    reason: str = ""

    @property
    def passed(self) -> bool:
        """True only when the scenario ran and every claim held."""
        return self.status == PASSED

    @property
    def failed_claims(self) -> tuple[Claim, ...]:
        """The claims that were judged and do not hold (not the skipped ones)."""
        return tuple(claim for claim in self.claims if claim.failed)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "topic": self.topic,
            "status": self.status,
            "claims": [claim.to_dict() for claim in self.claims],
            "seed": self.seed,
            "duration_s": self.duration_s,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScenarioResult:
        """Rebuild a result from :meth:`to_dict` output."""
        return cls(
            id=data["id"],
            topic=data["topic"],
            status=data["status"],
            claims=tuple(Claim.from_dict(c) for c in data["claims"]),
            seed=data["seed"],
            duration_s=data["duration_s"],
            reason=data.get("reason", ""),
        )


@dataclass(frozen=True)
class SemanticsResult:
    """The outcome of one autograd semantics check (:mod:`gradcheck.semantics`).

    ``rule`` names the check (``"accumulation"``), ``name`` the function it ran on; ``passed`` is
    True when every claim held; ``status`` is :func:`claims_status` of the claims (``skipped``
    when none could be judged on this torch, which is neither a pass nor a failure).
    """

    rule: str
    name: str
    passed: bool
    claims: tuple[Claim, ...]
    duration_s: float

    @property
    def status(self) -> str:
        """``"passed"``, ``"failed"`` or ``"skipped"`` (no claim could be judged)."""
        return claims_status(self.claims)

    @property
    def message(self) -> str:
        """One line per claim: ``ok``/``FAILED``/``skip``, the statement and what was observed."""
        verdict = {
            PASSED: "holds",
            FAILED: "does not hold",
            SKIPPED: "could not be judged on this torch",
        }[self.status]
        lines = [f"Semantics {self.rule!r} {verdict} for {self.name!r}"]
        for claim in self.claims:
            mark = CLAIM_MARKS[claim.status]
            detail = (claim.skipped or claim.detail).replace("\n", "\n      ")
            lines.append(f"  {mark:<6} {claim.statement}: {detail}")
        return "\n".join(lines)

    def raise_for_failure(self) -> SemanticsResult:
        """Raise :class:`gradcheck.SemanticsViolation` when a claim failed; return self."""
        if self.status == FAILED:
            raise SemanticsViolation(self.message, self)
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "rule": self.rule,
            "name": self.name,
            "passed": self.passed,
            "status": self.status,
            "claims": [claim.to_dict() for claim in self.claims],
            "duration_s": self.duration_s,
        }
