"""The matrix's column headings: each run is named by the environment facts that differ
between the runs (torch's version first), so two columns never read the same."""

from __future__ import annotations

from typing import Any

FIRST_FACTS = ("torch", "python", "devices")
"""Facts named first when they differ, in this order."""


def run_headings(matrix: dict[str, Any]) -> list[str]:
    """One heading per run of ``matrix`` (:func:`gradcheck.report.merge.merge_documents`):
    ``torch 2.13.0 · python CPython 3.12.1`` from the facts that differ, torch first; the
    run's own label where no fact differs."""
    differing = [fact for fact in matrix.get("environment", ()) if fact.get("differs")]
    order = {name: index for index, name in enumerate(FIRST_FACTS)}
    differing.sort(key=lambda fact: order.get(fact["fact"], len(order)))
    headings = []
    for index, run in enumerate(matrix["runs"]):
        parts = [
            f"{fact['fact'].replace('_', ' ')} {fact['values'][index]}"
            for fact in differing[:3]
            if index < len(fact["values"])
        ]
        headings.append(" · ".join(parts) if parts else str(run.get("label", "")))
    return headings
