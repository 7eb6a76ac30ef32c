"""Render run documents and matrices to one self-contained HTML file each.

jinja2 with autoescaping on: every text from a test, an exception, a scenario or an environment
is escaped; only the SVG charts of :mod:`.svg` (which escape their own text) are inserted as
markup. The page has inline CSS, no script, and no link to anything outside it. This is the
only module that imports jinja2. The numbers about benchmarks come from :mod:`.benchmarks`, what
they say about check_function's speed and memory from :mod:`.speed`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gradcheck.report import svg
from gradcheck.report.benchmarks import benchmark_groups, where_torch_lands
from gradcheck.report.columns import run_headings
from gradcheck.report.document import (
    RUN_ORIGIN,
    UNKNOWN,
    as_float,
    claim_status,
    failures,
    reference_title,
    references,
)
from gradcheck.report.ops import KIND as OPS_KIND
from gradcheck.report.ops import ops_context
from gradcheck.report.sections import count_tiles, empty_reasons
from gradcheck.report.shorten import vector_text, worst_judges
from gradcheck.report.speed import speed_findings
from gradcheck.status import EXPECTED_FAILURE, FAILED, FAILURES, PASSED, RANK

TEMPLATES = Path(__file__).parent / "templates"


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
    env.filters.update(
        sci=sci, num=num, pct=pct, ratio=ratio, secs=secs, known_count=known_count, markup=Markup
    )
    env.globals.update(FAILURES=FAILURES, EXPECTED_FAILURE=EXPECTED_FAILURE)
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


def ratio(value: Any) -> str:
    """A time ratio with 3 significant digits (``11.2x``), ``-`` when absent."""
    number = as_float(value)
    return "-" if value is None or math.isnan(number) else f"{number:.3g}x"


def known_count(value: Any) -> str:
    """A count as kept (``12``), or ``unknown`` where none was kept: never a made-up 0."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return UNKNOWN


def secs(value: Any) -> str:
    """A duration: ``1.23 s``, ``45.6 ms``."""
    return svg.format_seconds(as_float(value))


def _rank(status: str) -> int:
    return RANK.get(status, 3)


def _failures_first(items: Iterable[dict[str, Any]], key: str = "status") -> list[dict]:
    return sorted(items, key=lambda item: _rank(str(item.get(key, ""))))


def _origin_text(origin: str, outcomes: dict[str, str]) -> str:
    if origin == RUN_ORIGIN:
        return ""
    return f"recorded in test {origin} (test {outcomes.get(origin, 'unknown')})"


def _shown_status(entry: dict[str, Any], outcomes: dict[str, str]) -> str:
    """The status to display: a failure recorded inside a test that passed is what the test
    expected (a planted bug caught), shown as ``failed, as expected``."""
    status = str(entry.get("status", ""))
    origin = entry.get("origin", RUN_ORIGIN)
    if status == FAILED and origin != RUN_ORIGIN and outcomes.get(origin) == PASSED:
        return EXPECTED_FAILURE
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
        if outcomes.get(origin) in FAILURES:
            return 0
        return 1 if f"[{scenario['id']}]" in origin else 2

    for scenario in document["scenarios"]:
        counts[scenario["id"]] = counts.get(scenario["id"], 0) + 1
        shown = chosen.get(scenario["id"])
        if shown is None or preference(scenario) < preference(shown):
            chosen[scenario["id"]] = scenario
    entries = []
    for scenario_id, scenario in chosen.items():
        claims = []
        for claim in scenario.get("claims", ()):
            rows = _claim_rows(claim)
            claims.append(
                {
                    **claim,
                    "rows": rows,
                    "shown_rows": worst_judges(rows),
                    "stated_text": vector_text(claim.get("stated")),
                    "measured_text": vector_text(claim.get("measured"), num),
                    "status": claim_status(claim),
                }
            )
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
                "failed_rows": [r for r in rows if r["status"] != PASSED],
            }
        )
    return _failures_first(entries, key="shown_status")


def _references(document: dict[str, Any], outcomes: dict[str, str]) -> list[dict[str, Any]]:
    """The low-precision and compiled checks, failures first, each with its chart."""
    entries = []
    for check in references(document):
        rows = [{**row, "index": index} for index, row in enumerate(check.get("rows", ()))]
        entries.append(
            {
                **check,
                "title": reference_title(check),
                "rows": _failures_first(rows),
                "shown_status": _shown_status(check, outcomes),
                "chart": svg.reference_error_chart(rows),
                "origin_text": _origin_text(check.get("origin", RUN_ORIGIN), outcomes),
                "failed_rows": [r for r in rows if r.get("status") != PASSED],
                "shown_reproduce": check.get("command") or check.get("reproduce", ""),
            }
        )
    return _failures_first(entries, key="shown_status")


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


SEED_OPTION = "--hypothesis-seed="


def _environment_rows(environment: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key, value in environment.items():
        if isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value)
        value = str(value)
        if key == "hypothesis_seed" and value.startswith(SEED_OPTION):  # the number, then how
            value = f"{value[len(SEED_OPTION) :]} (set by {SEED_OPTION.rstrip('=')})"
        rows.append((key.replace("_", " "), value))
    return rows


def _without_reproduce(message: str) -> str:
    return "\n".join(
        line for line in message.splitlines() if not line.strip().startswith("reproduce:")
    ).strip()


def _shown_checks(test: dict[str, Any]) -> list[dict[str, Any]]:
    """The checks a test recorded, as the page lists them under it: a failure inside a test
    that passed is the planted bug it expected to catch (``failed, as expected``)."""
    tally = test.get("checks") or {}
    kept = tally.get("shown")
    if kept is None:  # a document written before the messages were kept
        kept = list(tally.get("failures", ())) + (
            [tally["closest"]] if tally.get("closest") else []
        )
    shown = []
    for check in kept:
        status = str(check.get("status", ""))
        if status == FAILED and test.get("outcome") == PASSED:
            status = EXPECTED_FAILURE
        shown.append(
            {
                **check,
                "shown_status": status,
                "where": _where(check.get("worst") or {}),
                "text": _without_reproduce(str(check.get("message", ""))),
            }
        )
    return shown


def _tests(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every test, failures first, with the checks it recorded and how they read."""
    tests = []
    for test in _failures_first(document["tests"], key="outcome"):
        checks = _shown_checks(test)
        counts = dict((test.get("checks") or {}).get("counts", {}))
        if test.get("outcome") == PASSED and counts.get(FAILED):
            counts[EXPECTED_FAILURE] = counts.pop(FAILED)
        tests.append({**test, "shown_checks": checks, "shown_counts": counts})
    return tests


def report_context(document: dict[str, Any]) -> dict[str, Any]:
    """Everything the report template shows, in display order (failures first everywhere)."""
    outcomes = {test["nodeid"]: test["outcome"] for test in document["tests"]}
    tests = _tests(document)
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
        "other_not_passed": [t for t in others if t["outcome"] != PASSED],
        "other_passed": [t for t in others if t["outcome"] == PASSED],
        "properties_not_passed": [t for t in properties if t["outcome"] != PASSED],
        "properties_passed": [t for t in properties if t["outcome"] == PASSED],
        "tiles": count_tiles(document),
        "empty": empty_reasons(document),
        "models": _models(document, outcomes),
        "parity": parity,
        "references": _references(document, outcomes),
        "benchmarks": benchmarks,
        "benchmark_tables": benchmark_tables(groups),
        "benchmark_chart": svg.benchmark_chart(benchmarks) if benchmarks else "",
        "backward_forward_chart": svg.backward_forward_chart(benchmarks),
        "where_torch_lands": where_torch_lands(benchmarks),
        "speed": speed_findings(benchmarks),
    }


def render_report(document: dict[str, Any]) -> str:
    """The HTML report of one run document (``gradcheck ops``'s kind has its own page)."""
    if document.get("kind") == OPS_KIND:
        return _environment().get_template("ops.html.j2").render(**ops_context(document))
    return _environment().get_template("report.html.j2").render(**report_context(document))


def render_matrix(matrix: dict[str, Any]) -> str:
    """The HTML matrix of :func:`gradcheck.report.merge.merge_documents`."""
    return (
        _environment()
        .get_template("matrix.html.j2")
        .render(matrix=matrix, headings=run_headings(matrix))
    )
