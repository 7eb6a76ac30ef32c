"""The run document of ``gradcheck ops`` (kind ``"ops"``) and what its report shows.

The document is a :func:`~gradcheck.report.document.new_document` of kind ``"ops"`` with the
result of :func:`gradcheck.check_ops` (its ``to_dict()``) under ``ops``. Plain dicts only: the
classes, reasons and the display order were decided by the run (``summary["counts"]`` lists the
classes worst first; ``summary["disagreements"]`` every disagreement, unexplained first).
"""

from __future__ import annotations

import math
from typing import Any

from gradcheck.report.document import as_float, new_document
from gradcheck.status import EMPTY, FAILED, PASSED

KIND = "ops"
AGREE_PASS = "agree-pass"


def ops_document(
    result: dict[str, Any], *, command: str, environment: dict[str, Any]
) -> dict[str, Any]:
    """The run document of one ``check_ops`` result (``OpsResult.to_dict()``)."""
    settings = result["settings"]
    document = new_document(
        KIND,
        title=f"OpInfo ops, {settings['dtype']}, {settings['device']}",
        command=command,
    )
    document.update(
        duration_s=result["duration_s"],
        seed=settings["seed"],
        environment=environment,
        ops=result,
        summary=result["summary"],
        verdict=ops_verdict(result),
    )
    return document


def ops_verdict(result: dict[str, Any]) -> str:
    """``failed`` with an unexplained disagreement or exception, ``passed`` otherwise, and
    ``empty`` when no sample was checked."""
    if not result["rows"]:
        return EMPTY
    return FAILED if result["summary"]["unexplained"] else PASSED


def _rank(summary: dict[str, Any]) -> dict[str, int]:
    return {name: i for i, name in enumerate(summary.get("counts", {}))}


def _worst_error(rows: list[dict[str, Any]]) -> float:
    errors = [as_float(r["ours"].get("max_rel_error")) for r in rows]
    finite = [e for e in errors if not math.isnan(e)]
    return max(finite) if finite else math.nan


def _op_entry(key: str, rows: list[dict[str, Any]], rank: dict[str, int]) -> dict[str, Any]:
    ordered = sorted(rows, key=lambda r: (not r["unexplained"], rank.get(r["category"], 99)))
    return {
        "key": key,
        "rows": sorted(rows, key=lambda r: r["sample"]),
        "worst": ordered[0]["category"],
        "unexplained": any(r["unexplained"] for r in rows),
        "explained": any(r["reason"] for r in rows),
        "ours_s": sum(as_float(r["ours"]["time_s"]) for r in rows),
        "slow_s": sum(as_float(r["torch_slow"]["time_s"]) for r in rows),
        "fast_s": sum(as_float(r["torch_fast"]["time_s"]) for r in rows),
        "worst_rel_error": _worst_error(rows),
    }


def ops_context(document: dict[str, Any]) -> dict[str, Any]:
    """Everything the ops report shows: the summary, every disagreement first (unexplained,
    then explained), the other samples that are not agreeing passes, one entry per op (worst
    first) and the skipped ops."""
    result = document["ops"]
    summary = result["summary"]
    rank = _rank(summary)
    rows = result["rows"]
    by_place = {(r["key"], r["sample"]): r for r in rows}
    disagreements = [by_place[(d["key"], d["sample"])] for d in summary["disagreements"]]
    listed = {(r["key"], r["sample"]) for r in disagreements}
    others = sorted(
        (r for r in rows if r["category"] != AGREE_PASS and (r["key"], r["sample"]) not in listed),
        key=lambda r: rank.get(r["category"], 99),
    )
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["key"], []).append(row)
    ops = [_op_entry(key, items, rank) for key, items in grouped.items()]
    ops.sort(key=lambda e: (not e["unexplained"], not e["explained"], rank.get(e["worst"], 99)))
    return {
        "doc": document,
        "result": result,
        "summary": summary,
        "settings": result["settings"],
        "disagreements": disagreements,
        "others": others,
        "ops": ops,
        "skipped": result["skipped"],
        "environment": [
            (key.replace("_", " "), ", ".join(map(str, v)) if isinstance(v, list) else str(v))
            for key, v in document["environment"].items()
        ],
    }
