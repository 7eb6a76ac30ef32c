"""The numbers a report shows about benchmarks, computed from pytest-benchmark's entries.

Rates and their units, each judge's time over its group's reference judge, backward time over
forward time, and the grouping and order of benchmarks; :mod:`.render` lays them out as HTML and
``benchmarks/conftest.py`` prints them after pytest-benchmark's tables. No torch, no jinja2.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable
from typing import Any

from gradcheck.report.document import as_float
from gradcheck.report.speed import LISTS

RATES = (("samples_per_s", "samples/s"), ("backward_calls_per_s", "backward calls/s"))
"""The throughput benchmarks' rate keys in ``extra_info``, with their units."""
THROUGHPUT_KEYS = ("forward_s", "backward_s", "backward_over_forward", *(k for k, _ in RATES))
VERIFICATION_KEYS = ("judge", "full_run_s")
REFERENCE_JUDGES = ("check_function", "check_module")
"""gradcheck's own judges: in a verification group, the other judges' times are divided by the
time of the group's reference (the first of these found in it)."""


def rate_of(info: dict[str, Any]) -> tuple[str, str]:
    """The rate key in a benchmark's ``extra_info`` and its unit (:data:`RATES`); empty when it
    records none."""
    return next(((key, unit) for key, unit in RATES if key in info), ("", ""))


def rate(value: Any) -> str:
    """A rate: ``25,355`` from 100 up, three significant digits below; ``-`` when absent."""
    number = as_float(value)
    if value is None or not math.isfinite(number):
        return "-"
    return f"{number:,.0f}" if number >= 100 else f"{number:.3g}"


def _extra_text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def judge_seconds(bench: dict[str, Any]) -> float:
    """A judge's time on its group's whole work: ``extra_info["full_run_s"]`` where the benchmark
    timed only part of it (a peer capped per tensor, its total extrapolated), else the mean
    round; NaN when neither is there."""
    info = bench.get("extra_info") or {}
    if "full_run_s" in info:
        return as_float(info["full_run_s"])
    return as_float((bench.get("stats") or {}).get("mean"))


def group_reference(benches: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The group's benchmark of a gradcheck judge (:data:`REFERENCE_JUDGES`), or None."""
    by_judge = {(b.get("extra_info") or {}).get("judge"): b for b in benches}
    return next((by_judge[j] for j in REFERENCE_JUDGES if j in by_judge), None)


def time_vs_reference(bench: dict[str, Any], reference: dict[str, Any] | None) -> float:
    """``bench``'s time over its group reference's (:func:`judge_seconds` of each): below 1 the
    judge is faster than gradcheck's; NaN without a reference, a judge, or a finite time."""
    if reference is None or not (bench.get("extra_info") or {}).get("judge"):
        return math.nan
    ratio = judge_seconds(bench) / judge_seconds(reference)
    return ratio if math.isfinite(ratio) and ratio > 0 else math.nan


def _versus_reference(
    bench: dict[str, Any], reference: dict[str, Any] | None, ratio: float
) -> tuple[str, str]:
    """The ratio cell of a verification row (``ratio`` is :func:`time_vs_reference`'s): the
    text, and a note saying which way it goes."""
    if reference is None:
        return "-", ""
    name = str(reference["extra_info"]["judge"])
    if bench is reference:
        return "1x", "the reference"
    if not math.isfinite(ratio):
        return "-", ""
    if ratio < 1:
        return f"{ratio:.3g}x", f"{1 / ratio:.3g}x faster than {name}"
    return f"{ratio:.3g}x", f"{ratio:.3g}x slower than {name}"


def _benchmark_row(bench: dict[str, Any], reference: dict[str, Any] | None) -> dict[str, Any]:
    info = bench.get("extra_info") or {}
    rate_key, unit = rate_of(info)
    ratio = as_float(info.get("backward_over_forward"))
    versus_ratio = time_vs_reference(bench, reference)
    versus, versus_note = _versus_reference(bench, reference, versus_ratio)
    shown = set(THROUGHPUT_KEYS + VERIFICATION_KEYS + LISTS)  # lists: in the speed tables
    return {
        **bench,
        "stats": bench.get("stats") or {},
        "rate_text": rate(info.get(rate_key)) if rate_key else "-",
        "rate_unit": unit,
        "ops_text": rate((bench.get("stats") or {}).get("ops")),
        "forward_s": info.get("forward_s"),
        "backward_s": info.get("backward_s"),
        "ratio_text": f"{ratio:.2f}x" if math.isfinite(ratio) else "-",
        "judge": str(info.get("judge", "")),
        "reference": bench is reference,
        "time_vs_reference": versus_ratio,
        "versus": versus,
        "versus_note": versus_note,
        "extra": [
            (str(key), _extra_text(value))
            for key, value in sorted(info.items(), key=lambda item: str(item[0]))
            if key not in shown
        ],
    }


def where_torch_lands(benchmarks: Iterable[dict[str, Any]]) -> list[str]:
    """One sentence per kind of throughput benchmark (by its rate's unit): the range and median
    of backward time over forward time, against the 2x of a well-implemented backward ("about"
    when the median lies within 1.5x to 2.5x, else "above" or "below")."""
    ratios: dict[str, list[float]] = {}
    for bench in benchmarks:
        info = bench.get("extra_info") or {}
        ratio = as_float(info.get("backward_over_forward"))
        _, unit = rate_of(info)
        if unit and math.isfinite(ratio):
            ratios.setdefault(unit, []).append(ratio)
    sentences = []
    for _, unit in RATES:
        if unit not in ratios:
            continue
        values = sorted(ratios[unit])
        middle = statistics.median(values)
        verdict = "about" if 1.5 <= middle <= 2.5 else "above" if middle > 2.5 else "below"
        sentences.append(
            f"Benchmarks measured in {unit} ({len(values)}): backward takes "
            f"{values[0]:.2f}x to {values[-1]:.2f}x its forward, median {middle:.2f}x, "
            f"{verdict} the 2x of a well-implemented backward."
        )
    return sentences


def natural(text: Any) -> list[Any]:
    """A sort key that orders numbers inside names by value: b1, b8, b32 (not b1, b32, b8)."""
    parts = re.split(r"(\d+)", str(text or ""))
    return [int(part) if index % 2 else part for index, part in enumerate(parts)]


def benchmark_groups(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The benchmarks by group, throughput groups first (the rows that split forward from
    backward), then verification groups (judges timed on the same work), then the rest; by
    group name within each kind. In a verification group the reference judge's row (see
    :data:`REFERENCE_JUDGES`) comes first; the others carry their time over its."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for bench in entries:
        grouped.setdefault(str(bench.get("group") or ""), []).append(bench)
    groups = []
    for name, benches in grouped.items():
        reference = group_reference(benches)
        rows = [_benchmark_row(bench, reference) for bench in benches]
        keys = {key for row in rows for key in (row.get("extra_info") or {})}
        rows.sort(key=lambda row: (not row["reference"], natural(row.get("name"))))
        groups.append(
            {
                "name": name or "(no group)",
                "group": name,
                "throughput": "backward_over_forward" in keys,  # a forward/backward split
                "verification": "judge" in keys,
                "reference_judge": (reference or {}).get("extra_info", {}).get("judge", ""),
                "rows": rows,
            }
        )
    groups.sort(key=lambda g: (not g["throughput"], not g["verification"], g["group"]))
    return groups
