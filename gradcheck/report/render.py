"""Render run documents and matrices to one self-contained HTML file each.

jinja2 with autoescaping on: every text from a test, an exception, a scenario or an environment
is escaped; only the SVG charts of :mod:`.svg` (which escape their own text) are inserted as
markup. The page has inline CSS, no script, and no link to anything outside it. This is the
only module that imports jinja2.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gradcheck.report import svg
from gradcheck.report.document import (
    FAILED_OUTCOMES,
    RUN_ORIGIN,
    as_float,
    claim_status,
    failures,
)

TEMPLATES = Path(__file__).parent / "templates"
STATUS_RANK = {
    "error": 0,
    "failed": 1,
    "xpassed": 2,
    "incomplete": 3,
    "kink-affected": 3,
    "inconclusive": 3,
    "skipped": 4,
    "xfailed": 5,
    "failed, expected": 5,
    "passed": 6,
}


def _environment() -> Any:
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(sci=sci, num=num, pct=pct, secs=secs, markup=Markup)
    return env


def sci(value: Any) -> str:
    """``1.2e-07``; ``0`` for zero; ``-`` when absent."""
    number = as_float(value)
    if value is None or math.isnan(number):
        return "-"
    return "0" if number == 0 else f"{number:.1e}"


def num(value: Any) -> str:
    """A value with 8 significant digits, ``-`` when absent."""
    number = as_float(value)
    return "-" if value is None or math.isnan(number) else f"{number:.8g}"


def pct(value: Any) -> str:
    """A share as a percentage (``12%``), or a multiple when far above 100% (``4311x``)."""
    number = as_float(value)
    if value is None or math.isnan(number):
        return "-"
    return f"{number:.3g}x" if number >= 10 else f"{100 * number:.0f}%"


def secs(value: Any) -> str:
    """A duration: ``1.23 s``, ``45.6 ms``."""
    return svg.format_seconds(as_float(value))


def _rank(status: str) -> int:
    return STATUS_RANK.get(status, 3)


def _failures_first(items: Iterable[dict[str, Any]], key: str = "status") -> list[dict]:
    return sorted(items, key=lambda item: _rank(str(item.get(key, ""))))


def _origin_text(origin: str, outcomes: dict[str, str]) -> str:
    if origin == RUN_ORIGIN:
        return ""
    return f"recorded in test {origin} (test {outcomes.get(origin, 'unknown')})"


def _shown_status(entry: dict[str, Any], outcomes: dict[str, str]) -> str:
    """The status to display: a failure recorded inside a test that passed is what the test
    expected (a planted bug caught), shown as ``failed, expected``."""
    status = str(entry.get("status", ""))
    origin = entry.get("origin", RUN_ORIGIN)
    if status == "failed" and origin != RUN_ORIGIN and outcomes.get(origin) == "passed":
        return "failed, expected"
    return status


def _claim_rows(claim: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for check in claim.get("checks", ()):
        worst = check.get("worst") or {}
        rows.append(
            {
                "oracle": check["oracle"],
                "status": check["status"],
                "where": _where(worst),
                "autograd": worst.get("autograd"),
                "value": worst.get("oracle"),
                "abs_error": worst.get("abs_error"),
                "rel_error": check.get("max_rel_error"),
                "allowed": worst.get("allowed"),
                "estimate": check.get("error_estimate"),
                "checked": check.get("checked"),
            }
        )
    return rows


def _where(worst: dict[str, Any]) -> str:
    if not worst:
        return ""
    if worst.get("direction") is not None:
        return f"direction {worst['direction']}"
    index = worst.get("index") or ()
    inside = ", ".join(str(i) for i in index)
    name = worst.get("input") or ""
    return f"{name}[{inside}]" if inside else str(name)


def _scenarios(document: dict[str, Any], outcomes: dict[str, str]) -> list[dict[str, Any]]:
    """One entry per scenario id. A pytest run may record a scenario in several tests; the
    one shown is from a failing test, else from the test whose id names the scenario, else the
    first."""
    chosen: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}

    def preference(scenario: dict[str, Any]) -> int:
        origin = scenario.get("origin", "")
        if outcomes.get(origin) in FAILED_OUTCOMES:
            return 0
        return 1 if f"[{scenario['id']}]" in origin else 2

    for scenario in document["scenarios"]:
        counts[scenario["id"]] = counts.get(scenario["id"], 0) + 1
        shown = chosen.get(scenario["id"])
        if shown is None or preference(scenario) < preference(shown):
            chosen[scenario["id"]] = scenario
    entries = []
    for scenario_id, scenario in chosen.items():
        claims = [
            {
                **claim,
                "rows": _claim_rows(claim),
                "status": claim_status(claim),
            }
            for claim in scenario.get("claims", ())
        ]
        entries.append(
            {
                **scenario,
                "shown_status": _shown_status(scenario, outcomes),
                "claims": _failures_first(claims),
                "recorded": counts[scenario_id],
                "origin_text": _origin_text(scenario.get("origin", RUN_ORIGIN), outcomes),
            }
        )
    return _failures_first(entries, key="shown_status")


def _models(document: dict[str, Any], outcomes: dict[str, str]) -> list[dict[str, Any]]:
    entries = []
    for model in document["models"]:
        rows = []
        for index, row in enumerate(model.get("rows", ())):
            oracle, autograd, allowed = (
                as_float(row.get("oracle")),
                as_float(row.get("autograd")),
                as_float(row.get("allowed")),
            )
            used = abs(autograd - oracle) / allowed if allowed > 0 else math.nan
            rows.append({**row, "index": index, "used": used})
        entries.append(
            {
                **model,
                "rows": rows,
                "shown_status": _shown_status(model, outcomes),
                "chart": svg.layer_error_chart(model.get("rows", ())),
                "origin_text": _origin_text(model.get("origin", RUN_ORIGIN), outcomes),
                "failed_rows": [r for r in rows if r["status"] != "passed"],
            }
        )
    return _failures_first(entries, key="shown_status")


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
    shown = set(THROUGHPUT_KEYS + VERIFICATION_KEYS)
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


BENCHMARK_TABLES = {
    (True, False): "Throughput",
    (False, True): "Cost of verification",
    (True, True): "Throughput and verification",
    (False, False): "Other benchmarks",
}


def benchmark_tables(groups: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One table per kind of :func:`benchmark_groups` (their order kept), each with the
    columns its kind has and a group row before each group's benchmarks."""
    tables: list[dict[str, Any]] = []
    for group in groups:
        kind = (group["throughput"], group["verification"])
        if not tables or tables[-1]["kind"] != kind:
            # name, mean, min-max, rounds, extra; throughput: rate, forward, backward, their
            # ratio; verification: judge, ratio; the others: ops/s
            columns = 5 + (4 if group["throughput"] else 1) + 2 * group["verification"]
            tables.append(
                {
                    "kind": kind,
                    "title": BENCHMARK_TABLES[kind],
                    "throughput": group["throughput"],
                    "verification": group["verification"],
                    "columns": columns,
                    "groups": [],
                }
            )
        tables[-1]["groups"].append(group)
    return tables


def _environment_rows(environment: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key, value in environment.items():
        if isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value)
        rows.append((key.replace("_", " "), str(value)))
    return rows


def report_context(document: dict[str, Any]) -> dict[str, Any]:
    """Everything the report template shows, in display order (failures first everywhere)."""
    outcomes = {test["nodeid"]: test["outcome"] for test in document["tests"]}
    tests = _failures_first(document["tests"], key="outcome")
    properties = [t for t in tests if t.get("suite") == "properties"]
    others = [t for t in tests if t.get("suite") != "properties"]
    parity = _failures_first(
        (
            {
                **p,
                "shown_status": _shown_status(p, outcomes),
                "origin_text": _origin_text(p.get("origin", RUN_ORIGIN), outcomes),
            }
            for p in document["parity"]
        ),
        key="shown_status",
    )
    groups = benchmark_groups(document["benchmarks"])
    benchmarks = [row for group in groups for row in group["rows"]]  # the tables' order
    return {
        "doc": document,
        "failures": failures(document),
        "environment": _environment_rows(document["environment"]),
        "scenarios": _scenarios(document, outcomes),
        "properties": properties,
        "other_tests": others,
        "other_not_passed": [t for t in others if t["outcome"] != "passed"],
        "models": _models(document, outcomes),
        "parity": parity,
        "benchmarks": benchmarks,
        "benchmark_tables": benchmark_tables(groups),
        "benchmark_chart": svg.benchmark_chart(benchmarks) if benchmarks else "",
        "backward_forward_chart": svg.backward_forward_chart(benchmarks),
        "where_torch_lands": where_torch_lands(benchmarks),
    }


def render_report(document: dict[str, Any]) -> str:
    """The HTML report of one run document."""
    return _environment().get_template("report.html.j2").render(**report_context(document))


def render_matrix(matrix: dict[str, Any]) -> str:
    """The HTML matrix of :func:`gradcheck.report.merge.merge_documents`."""
    return _environment().get_template("matrix.html.j2").render(matrix=matrix)
