"""What the top of the report says about its sections: the count tiles (each says what it
counts) and, for a section that has nothing to show, why it did not run."""

from __future__ import annotations

from collections import Counter
from typing import Any

from gradcheck.report.document import references

SECTIONS = ("scenarios", "properties", "models", "parity", "references", "benchmarks", "tests")
"""The report's sections, in page order (the environment comes last, after them)."""


def count_tiles(document: dict[str, Any]) -> list[tuple[str, Any]]:
    """``(label, counts)`` per tile: a mapping of status to count, or a plain number."""
    tests = document["tests"]
    properties = Counter(t["outcome"] for t in tests if t.get("suite") == "properties")
    others = Counter(t["outcome"] for t in tests if t.get("suite") != "properties")
    summary = document.get("summary", {})
    tiles: list[tuple[str, Any]] = [("property tests", dict(properties))]
    if others or document.get("kind") == "pytest":
        tiles.append(("other tests", dict(others)))
    tiles += [
        ("notebook scenarios", summary.get("scenarios", {})),
        ("notebook claims", summary.get("claims", {})),
        ("model tensors", summary.get("model_rows", {})),
        ("device parity checks", summary.get("parity", {})),
        ("low precision, compiled and distributed tensors", summary.get("reference_rows", {})),
        ("benchmarks", summary.get("benchmarks", 0)),
    ]
    return tiles


_WHAT = {
    "scenarios": "notebook scenario",
    "properties": "property test",
    "models": "model check",
    "parity": "device parity check",
    "references": "low-precision, compiled or distributed check",
    "benchmarks": "benchmark",
    "tests": "other test",
}


def _recorded_reason(section: str, document: dict[str, Any]) -> str:
    """Why a ``gradcheck run`` section is empty, from the sections and device it ran with."""
    if section == "references":
        return (
            "gradcheck run has no such section; `gradcheck model NAME --dtype bfloat16` (or "
            "--compile, or --ddp 2) runs one, and pytest --gradcheck-report records "
            "check_against_reference, check_compiled and check_distributed"
        )
    chosen = document.get("sections")
    if chosen is not None and section != "tests" and section not in chosen:
        how = "add --bench" if section == "benchmarks" else f"--only {section} runs it"
        return f"not among this run's sections ({', '.join(chosen)}); {how}"
    if section == "parity" and document.get("device") == "cpu":
        return (
            "device parity compares devices, and this run had --device cpu; "
            "--device all runs it on a machine with CUDA"
        )
    if section == "tests":
        return "every test of this run is a property test"
    return ""


def empty_reasons(document: dict[str, Any]) -> dict[str, str]:
    """For each section with nothing to show, a sentence saying why it did not run: the
    reason the run recorded for skipping it, else what the run's settings imply."""
    present = {
        "scenarios": document["scenarios"],
        "properties": [t for t in document["tests"] if t.get("suite") == "properties"],
        "models": document["models"],
        "parity": document["parity"],
        "references": references(document),
        "benchmarks": document["benchmarks"],
        "tests": [t for t in document["tests"] if t.get("suite") != "properties"],
    }
    reasons = {}
    for section in SECTIONS:
        if present[section]:
            continue
        recorded = [s["reason"] for s in document.get("skipped", ()) if section in s["section"]]
        if document.get("kind") == "run":
            reason = "; ".join(recorded) or _recorded_reason(section, document)
        else:
            reason = (
                "; ".join(recorded) or f"no test of this pytest run recorded a {_WHAT[section]}"
            )
        reasons[section] = (
            f"No {_WHAT[section]} ran: {reason or 'nothing of this kind was asked for'}."
        )
    return reasons
