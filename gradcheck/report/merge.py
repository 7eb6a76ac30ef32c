"""Merge run documents (one per torch version, device or machine) into a matrix.

Rows are checks: each notebook claim, each model tensor, each device-parity tensor, each tensor
of a low-precision or compiled check (its error: the implementation's against float64), each test
and each benchmark. Columns are runs. A cell holds the verdict and the error (or the mean time of
a benchmark). A row *differs* when its verdicts differ between runs, is *partial* when some run
did not have it, and has *moved* when its error changed by more than :data:`ERROR_MOVE` times
(a benchmark: its time by more than :data:`TIME_MOVE` times). Those rows come first.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gradcheck.report.document import (
    RUN_ORIGIN,
    as_float,
    claim_status,
    reference_title,
    references,
)
from gradcheck.status import FAILED, PASSED, SKIPPED

ERROR_MOVE = 10.0
TIME_MOVE = 1.5
ERROR_FLOOR = 1e-14
"""Errors below this are rounding; their ratios are not a move."""

MATRIX_SCHEMA = "gradcheck-matrix/1"
SECTIONS = ("scenarios", "models", "parity", "references", "tests", "benchmarks")
LABEL_FACTS = ("torch", "torchvision", "python", "devices", "hypothesis_profile", "git_commit")


def _claim_error(claim: dict[str, Any]) -> float:
    errors = [
        as_float(check.get("max_rel_error"))
        for check in claim.get("checks", ())
        if check.get("oracle") != "stated"
    ]
    finite = [e for e in errors if math.isfinite(e)]
    return max(finite) if finite else math.nan


def _origin_prefix(entry: dict[str, Any]) -> str:
    origin = entry.get("origin", RUN_ORIGIN)
    return "" if origin == RUN_ORIGIN else f"[{origin}] "


def document_cells(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Every row of one run: ``(section, key) -> cell`` with ``verdict``, ``error`` and ``value``
    (a benchmark's mean seconds)."""
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for scenario in document["scenarios"]:
        prefix = _origin_prefix(scenario)
        if not scenario.get("claims"):
            key = f"{prefix}{scenario['id']}"
            cells.setdefault(("scenarios", key), {"verdict": scenario["status"], "error": None})
        seen: Counter[str] = Counter()
        for claim in scenario.get("claims", ()):
            key = f"{prefix}{scenario['id']} :: {claim['statement']}"
            seen[key] += 1  # a statement made twice (two parts of one scenario) stays two rows
            if seen[key] > 1:
                key += f" (#{seen[key]})"
            cells.setdefault(
                ("scenarios", key),
                {
                    "verdict": claim_status(claim),
                    "error": _claim_error(claim),
                },
            )
    for model in document["models"]:
        label = model.get("label") or f"{model['module']} {model['mode']} {model['dtype']}"
        prefix = f"{_origin_prefix(model)}{label} ({model['device']})"
        for row in model.get("rows", ()):
            cells.setdefault(
                ("models", f"{prefix} :: {row['name']}"),
                {"verdict": row["status"], "error": as_float(row.get("relative_error"))},
            )
    for parity in document["parity"]:
        prefix = f"{_origin_prefix(parity)}{parity.get('label') or parity['module']}"
        for row in parity.get("rows", ()):
            cells.setdefault(
                ("parity", f"{prefix} :: {row['name']} @ {row['device']}"),
                {
                    "verdict": PASSED if row["passed"] else FAILED,
                    "error": as_float(row.get("relative_error")),
                },
            )
        for device, _reason in parity.get("skipped", ()):
            cells.setdefault(
                ("parity", f"{prefix} @ {device}"), {"verdict": SKIPPED, "error": None}
            )
    for reference in references(document):
        prefix = f"{_origin_prefix(reference)}{reference_title(reference)} ({reference['device']})"
        for row in reference.get("rows", ()):
            cells.setdefault(
                ("references", f"{prefix} :: {row['kind']} {row['name']}"),
                {"verdict": row["status"], "error": as_float(row.get("candidate_error"))},
            )
    for test in document["tests"]:
        cells.setdefault(("tests", test["nodeid"]), {"verdict": test["outcome"], "error": None})
    for bench in document["benchmarks"]:
        mean = as_float((bench.get("stats") or {}).get("mean"))
        cells.setdefault(
            ("benchmarks", bench.get("fullname") or bench["name"]),
            {"verdict": "measured", "error": None, "value": mean},
        )
    return cells


def run_label(document: dict[str, Any]) -> str:
    """``torch 2.14.1 · cpu · CPython 3.11.7``: what tells one run from another."""
    env = document.get("environment", {})
    devices = env.get("devices") or ["cpu"]
    gpu = "cuda" if any(str(d).startswith("cuda") for d in devices) else "cpu"
    return f"torch {env.get('torch', '?')} · {gpu} · {env.get('python', '?')}"


def _moved(values: Sequence[float], factor: float, floor: float) -> bool:
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 2:
        return False
    low, high = min(finite), max(finite)
    return high > floor and high > factor * max(low, floor)


def merge_documents(documents: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """The matrix of ``documents`` (``names``: their file names, shown under each column)."""
    runs = []
    for document, name in zip(documents, distinct_names(names)):
        runs.append(
            {
                "label": run_label(document),
                "file": name,
                "verdict": document.get("verdict", "?"),
                "created": document.get("created", ""),
                "kind": document.get("kind", ""),
                "profile": document.get("profile"),
                "duration_s": document.get("duration_s"),
            }
        )
    per_run = [document_cells(document) for document in documents]
    keys: dict[tuple[str, str], None] = {}
    for run_cells in per_run:
        keys.update(dict.fromkeys(run_cells))
    rows: list[dict[str, Any]] = []
    for section, key in keys:
        row_cells = [run_cells.get((section, key)) for run_cells in per_run]
        present = [c for c in row_cells if c is not None]
        verdicts = {c["verdict"] for c in present}
        if section == "benchmarks":
            moved = _moved([as_float(c.get("value")) for c in present], TIME_MOVE, 0.0)
        else:
            moved = _moved([as_float(c.get("error")) for c in present], ERROR_MOVE, ERROR_FLOOR)
        rows.append(
            {
                "section": section,
                "key": key,
                "cells": row_cells,
                "differs": len(verdicts) > 1,
                "partial": len(present) < len(row_cells),
                "moved": moved,
            }
        )
    order = {section: i for i, section in enumerate(SECTIONS)}
    rows.sort(
        key=lambda r: (not r["differs"], not r["partial"], not r["moved"], order[r["section"]])
    )
    return {
        "schema": MATRIX_SCHEMA,
        "title": f"gradcheck matrix of {len(documents)} runs",
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "runs": runs,
        "rows": rows,
        "summary": {
            "rows": len(rows),
            "differ": sum(r["differs"] for r in rows),
            "partial": sum(r["partial"] for r in rows),
            "moved": sum(r["moved"] for r in rows),
            "failed_runs": sum(run["verdict"] == FAILED for run in runs),
        },
        "environment": environment_differences(documents),
    }


def distinct_names(paths: Sequence[str]) -> list[str]:
    """The shortest trailing parts of ``paths`` that tell them apart: ``a.json``, or
    ``torch-2.13/gradcheck-report.json`` when two runs share a file name."""
    parts = [Path(path).resolve().parts for path in paths]
    for depth in range(1, max((len(p) for p in parts), default=1) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(path) for path in paths]


def _fact_text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def environment_differences(documents: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each environment fact with its value per run, the differing ones first."""
    facts: dict[str, None] = dict.fromkeys(LABEL_FACTS)
    for document in documents:
        facts.update(dict.fromkeys(document.get("environment", {})))
    table = []
    for fact in facts:
        values = [
            _fact_text(document.get("environment", {}).get(fact, "-")) for document in documents
        ]
        table.append({"fact": fact, "values": values, "differs": len(set(values)) > 1})
    return sorted(table, key=lambda row: not row["differs"])
