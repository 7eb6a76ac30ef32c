"""The run document: one JSON-ready dict that every HTML report and matrix is rendered from.

``gradcheck run`` and ``pytest --gradcheck-report`` both write one. Its fields:

- ``schema``, ``kind`` (``"run"`` or ``"pytest"``), ``title``, ``command``, ``created`` (UTC),
  ``duration_s``, ``profile``, ``seed``, ``environment`` (:mod:`.environment`);
- ``tests``: one entry per pytest test: ``nodeid``, ``suite``, ``outcome`` (passed, failed,
  error, skipped, xfailed, xpassed), ``duration_s``, ``message``, ``reproduce``, for property
  tests ``hypothesis`` (the calls of the body: ``examples``, ``passing``, ``failing``,
  ``invalid``, from :mod:`gradcheck.property_calls`) and ``falsifying_example`` (the last failing
  call), and ``checks`` (a :class:`CheckTally` of the results the test produced);
- ``scenarios``, ``models``, ``parity``, ``references``: result dicts (``to_dict()``) with an
  ``origin``: :data:`RUN_ORIGIN`, or the node id of the test that produced them (``references``
  holds the low-precision and compiled checks, :class:`~gradcheck.ReferenceCheckResult`;
  documents written before it existed have no such list, and read as an empty one);
- ``benchmarks``: pytest-benchmark statistics; ``skipped``: sections that could not run, and why;
- ``verdict`` and ``summary``, set by :func:`finalize`.

The verdict of a pytest run is its tests' outcomes: a result recorded inside a test that passed
(a planted bug the test expected to be caught) is evidence, not a failure. The verdict of
``gradcheck run`` is every check it ran itself.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from gradcheck.report.files import SCHEMA
from gradcheck.status import EMPTY, ERROR, FAILED, FAILURES, INCOMPLETE, PASSED, SKIPPED

RUN_ORIGIN = "gradcheck run"
"""The ``origin`` of results ``gradcheck run`` produced itself (not inside a pytest test)."""

KEPT_FAILURES = 5
"""Failed results kept in full per test; the rest are counted."""

KEPT_CHECKS = 12
"""Results whose messages are kept per test (failures first); the rest are counted."""


def new_document(kind: str, *, title: str, command: str) -> dict[str, Any]:
    """An empty run document of ``kind`` ``"run"`` or ``"pytest"``."""
    return {
        "schema": SCHEMA,
        "kind": kind,
        "title": title,
        "command": command,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "duration_s": 0.0,
        "profile": None,
        "seed": None,
        "environment": {},
        "verdict": EMPTY,
        "summary": {},
        "tests": [],
        "scenarios": [],
        "models": [],
        "parity": [],
        "references": [],
        "benchmarks": [],
        "skipped": [],
    }


def as_float(value: Any) -> float:
    """A number from a run document as a float: JSON's ``"nan"``/``"inf"`` strings become
    floats, and anything absent or not a number becomes NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _tolerance_used(result: dict[str, Any]) -> float:
    worst = result.get("worst") or {}
    allowed, error = worst.get("allowed"), worst.get("abs_error")
    if not isinstance(allowed, float | int) or not isinstance(error, float | int) or allowed <= 0:
        return math.nan
    return float(error) / float(allowed)


def result_summary(result: Any) -> dict[str, Any]:
    """A short dict for a published CheckResult or SemanticsResult: what, verdict, how close."""
    data = result.to_dict()
    if "rule" in data:  # SemanticsResult
        return {
            "kind": "semantics",
            "name": f"{data['rule']}: {data['name']}",
            "status": data["status"],
            "oracle": "semantics",
            "max_rel_error": None,
            "tolerance_used": None,
            "message": result.message,
            "reproduce": "",
            "worst": None,
        }
    return {
        "kind": "check",
        "name": data["name"],
        "status": data["status"],
        "oracle": data["oracle"],
        "max_rel_error": data["max_rel_error"],
        "tolerance_used": _tolerance_used(data),
        "message": data["message"],
        "reproduce": data["reproduce"],
        "worst": data.get("worst"),
    }


class CheckTally:
    """Every check result one test produced, summarised: counts by status, the passed result
    closest to its tolerance, the first :data:`KEPT_FAILURES` failures in full, and the
    messages of up to :data:`KEPT_CHECKS` results (failures first) to show under the test."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.closest: dict[str, Any] | None = None
        self.failures: list[dict[str, Any]] = []
        self.shown: list[dict[str, Any]] = []

    def _show(self, summary: dict[str, Any]) -> None:
        if len(self.shown) < KEPT_CHECKS:
            self.shown.append(summary)
            return
        if summary["status"] != PASSED:  # a failure or an undecided one displaces a pass
            for index in range(len(self.shown) - 1, -1, -1):
                if self.shown[index]["status"] == PASSED:
                    self.shown[index] = summary
                    return

    def add(self, result: Any) -> None:
        """Count ``result`` (a CheckResult or SemanticsResult) and keep it if it matters."""
        summary = result_summary(result)
        self.counts[summary["status"]] += 1
        self._show(summary)
        if summary["status"] == FAILED:
            if len(self.failures) < KEPT_FAILURES:
                self.failures.append(summary)
            return
        used = summary["tolerance_used"]
        if used is not None and used == used:
            best = self.closest["tolerance_used"] if self.closest else -1.0
            if used > best:
                self.closest = summary

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``recorded``, ``counts``, ``closest``, ``failures``, ``shown``
        (the kept messages, failures first)."""
        return {
            "recorded": sum(self.counts.values()),
            "counts": dict(self.counts),
            "closest": self.closest,
            "failures": self.failures,
            "shown": sorted(self.shown, key=lambda s: s["status"] == PASSED),
        }


UNKNOWN = "unknown"
"""What the report and the terminal say where a count was not kept (never 0)."""


def property_examples(test: dict[str, Any]) -> int | None:
    """The calls of a property test's body (``hypothesis.examples``, counted by the plugin's
    wrapper), or None where the test kept no count (a plain test in ``properties/``, one that
    was skipped, a document from a worker that did not report)."""
    examples = (test.get("hypothesis") or {}).get("examples")
    return examples if isinstance(examples, int) and not isinstance(examples, bool) else None


def examples_summary(tests: list[dict[str, Any]]) -> str:
    """``"N Hypothesis examples"`` over ``tests``, saying how many kept no count."""
    counts = [property_examples(test) for test in tests]
    known = [n for n in counts if n is not None]
    if not counts:
        return "0 Hypothesis examples"
    if not known:
        return f"{UNKNOWN} Hypothesis examples"
    text = f"{sum(known)} Hypothesis examples"
    missing = len(counts) - len(known)
    if missing:
        text += f" (count {UNKNOWN} for {missing} of {len(counts)} tests)"
    return text


REFERENCES_SECTION = "low precision, compiled and distributed"
"""The section name of :class:`~gradcheck.ReferenceCheckResult` and
:class:`~gradcheck.DistributedCheckResult` entries (failures, tiles)."""


def references(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The document's low-precision, compiled and distributed checks (``[]`` in a document
    written before they were recorded)."""
    return list(document.get("references") or ())


def reference_title(reference: dict[str, Any]) -> str:
    """What names a reference check: its ``label``, else ``fn vs reference (dtype)`` or ``fn
    compiled with BACKEND (dtype)``."""
    if reference.get("label"):
        return str(reference["label"])
    implementation = reference.get("implementation", "?")
    if reference.get("compiled"):
        sides = f"{implementation} compiled with {reference['compiled']}"
    else:
        sides = f"{implementation} vs {reference.get('reference', '?')}"
    return f"{sides} ({reference.get('dtype', '?')})"


def _failure(section: str, title: str, status: str, detail: str, reproduce: str) -> dict:
    if reproduce:  # the reproduce line is shown on its own; drop its copy from the message
        detail = "\n".join(
            line for line in detail.splitlines() if not line.strip().startswith("reproduce:")
        )
    return {
        "section": section,
        "title": title,
        "status": status,
        "detail": detail,
        "reproduce": reproduce,
    }


def claim_status(claim: dict[str, Any]) -> str:
    """A saved claim's ``"passed"``, ``"failed"`` or ``"skipped"`` (documents written before
    claims could be skipped have only ``passed``)."""
    if claim.get("skipped"):
        return SKIPPED
    return PASSED if claim["passed"] else FAILED


def _scenario_detail(scenario: dict[str, Any]) -> str:
    failed = [c for c in scenario.get("claims", ()) if claim_status(c) == FAILED]
    if not failed:
        return scenario.get("reason", "")
    return "\n".join(f"{c['statement']}: {c['detail']}" for c in failed)


def failures(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Everything that makes the verdict not "passed", worst first: failed tests, then failed or
    undecided checks that ``gradcheck run`` made itself. Each has ``section``, ``title``,
    ``status``, ``detail`` and a ``reproduce`` command."""
    found = []
    for scenario in document["scenarios"]:
        if scenario.get("origin") == RUN_ORIGIN and scenario["status"] == FAILED:
            found.append(
                _failure(
                    "scenarios",
                    scenario["id"],
                    FAILED,
                    _scenario_detail(scenario),
                    scenario.get("reproduce", ""),
                )
            )
    for model in document["models"]:
        if model.get("origin") == RUN_ORIGIN and model["status"] != PASSED:
            found.append(
                _failure(
                    "models",
                    model.get("label", model["module"]),
                    model["status"],
                    model["message"],
                    model.get("command") or model["reproduce"],
                )
            )
    for parity in document["parity"]:
        if parity.get("origin") == RUN_ORIGIN and parity["status"] == FAILED:
            found.append(
                _failure(
                    "device parity",
                    parity.get("label", parity["module"]),
                    FAILED,
                    parity["message"],
                    parity.get("command", ""),
                )
            )
    for reference in references(document):
        if reference.get("origin") == RUN_ORIGIN and reference["status"] != PASSED:
            found.append(
                _failure(
                    REFERENCES_SECTION,
                    reference_title(reference),
                    reference["status"],
                    reference.get("message", ""),
                    reference.get("command") or reference.get("reproduce", ""),
                )
            )
    for test in document["tests"]:
        if test["outcome"] in FAILURES:
            found.append(
                _failure(
                    test.get("suite") or "tests",
                    test["nodeid"],
                    test["outcome"],
                    "\n".join(
                        part
                        for part in (test.get("falsifying_example"), test.get("message"))
                        if part
                    ),
                    test.get("reproduce", ""),
                )
            )
    rank = {status: i for i, status in enumerate((ERROR, FAILED, INCOMPLETE))}
    return sorted(found, key=lambda f: rank.get(f["status"], 3))


def summarise(document: dict[str, Any]) -> dict[str, Any]:
    """Counts per section: tests by outcome, scenarios and claims, model rows, parity, benches."""
    claims = [c for s in document["scenarios"] for c in s.get("claims", ())]
    rows = [r for m in document["models"] for r in m.get("rows", ())]
    reference_rows = [r for c in references(document) for r in c.get("rows", ())]
    return {
        "tests": dict(Counter(t["outcome"] for t in document["tests"])),
        "scenarios": dict(Counter(s["status"] for s in document["scenarios"])),
        "claims": dict(Counter(claim_status(c) for c in claims)),
        "models": dict(Counter(m["status"] for m in document["models"])),
        "model_rows": dict(Counter(r["status"] for r in rows)),
        "parity": dict(Counter(p["status"] for p in document["parity"])),
        "references": dict(Counter(c["status"] for c in references(document))),
        "reference_rows": dict(Counter(r["status"] for r in reference_rows)),
        "benchmarks": len(document["benchmarks"]),
        "skipped_sections": len(document["skipped"]),
    }


def verdict(document: dict[str, Any]) -> str:
    """``"failed"``, ``"incomplete"`` (nothing failed, something undecided), ``"passed"``, or
    ``"empty"`` when nothing ran."""
    found = failures(document)
    if any(f["status"] in FAILURES for f in found):
        return FAILED
    if found:
        return INCOMPLETE
    return PASSED if ran_anything(document) else EMPTY


def ran_anything(document: dict[str, Any]) -> bool:
    """True when any section of ``document`` holds something (a test, a check, a benchmark)."""
    sections = ("tests", "scenarios", "models", "parity", "references", "benchmarks")
    return any(document.get(key) for key in sections)


def finalize(document: dict[str, Any], duration_s: float) -> dict[str, Any]:
    """Set ``duration_s``, ``summary`` and ``verdict``; return the document."""
    document["duration_s"] = duration_s
    document["summary"] = summarise(document)
    document["verdict"] = verdict(document)
    return document
