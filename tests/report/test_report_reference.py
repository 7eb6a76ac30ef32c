"""The report's "low precision and compiled" section, rendered from real check_against_reference
and check_compiled results (a planted softmax backward that misses ``- y * sum(y * g)`` fails
in bfloat16): the headline, the facts, the per-tensor table, the chart, escaping, folding, and
the same results through the document's JSON, its failures, its counts and the merge."""

from __future__ import annotations

import copy
import json
import re

import pytest
from html_parsing import Page
from report_documents import HOSTILE, reference_document, run_document

from gradcheck.reference_results import ReferenceCheckResult
from gradcheck.report.document import failures, finalize, summarise
from gradcheck.report.merge import merge_documents
from gradcheck.report.render import render_report
from gradcheck.report.shape import check_run_document
from gradcheck.report.svg import reference_error_chart

WRONG = f"softmax_{HOSTILE} vs softmax (bfloat16)"


@pytest.fixture(scope="module")
def document() -> dict:
    return reference_document()


def _block(html: str, title: str) -> str:
    """The HTML of the one reference check whose summary names ``title`` (escaped)."""
    escaped = title.replace("<", "&lt;").replace(">", "&gt;")
    head = html.index(f"<b>{escaped}</b>")
    start = html.rindex('<details class="model reference', 0, head)
    return html[start : html.index("</details>", head)]


def test_the_results_are_what_the_section_is_tested_on(document) -> None:
    wrong, compiled, hostile = (ReferenceCheckResult.from_dict(c) for c in document["references"])
    assert wrong.status == "failed" and [r.name for r in wrong.failed_rows] == ["x"]
    assert wrong.row("output").passed  # the forward is right; only the backward is wrong
    assert compiled.status == "passed" and compiled.compiled == "eager"
    assert hostile.status == "passed" and hostile.dtype == "float16"


def test_each_check_shows_its_sides_dtype_backend_reference_check_and_repeats(document) -> None:
    html = render_report(document)
    wrong = Page(_block(html, WRONG)).text
    assert "failed" in wrong.split()[0:2]
    assert f"implementation softmax_{HOSTILE} reference softmax" in wrong
    assert "dtype, device bfloat16, cpu backend not compiled" in wrong
    assert "reference's float64 gradient passed" in wrong
    assert "repeats 2 runs, bitwise identical" in wrong
    assert "Gradient mismatch against the float64 reference" in wrong
    assert "reproduce: gradcheck.check_against_reference(" in wrong
    compiled = Page(_block(html, "softmax compiled with eager (bfloat16)")).text
    assert "backend eager (first call, compilation included:" in compiled
    assert "reference softmax (eager)" in compiled


def test_the_table_has_a_row_per_tensor_failures_first(document) -> None:
    page = Page(render_report(document))
    rows = page.rows_after("references", before="benchmarks")
    wrong = ReferenceCheckResult.from_dict(document["references"][0])
    x, output = wrong.row("x"), wrong.row("output")
    heading = next(text for _, text in rows if "impl error" in text)
    for column in ("kind", "tensor", "shape", "impl error", "ref error", "ratio", "allowed"):
        assert column in heading
    assert "elementwise impl / ref (allowed)" in heading and "spread" in heading
    cls, text = next(row for row in rows if row[1].startswith("0 failed input x 4x8"))
    assert cls == "failed"
    assert f"{x.candidate_error:.1e} {x.baseline_error:.1e} {x.ratio:.3g}x" in text
    assert f"{x.allowed:.1e} {x.candidate_elementwise:.1e} / {x.baseline_elementwise:.1e}" in text
    note = rows[rows.index((cls, text)) + 1]
    assert note[0] == "failed note-row" and note[1].startswith("error normwise")  # the gate's
    assert any(
        row[1].startswith(f"1 passed output output 4x8 {output.candidate_error:.1e}")
        for row in rows
    )
    kinds = {row[1].split()[2] for row in rows[1:] if row[1][0].isdigit()}
    assert kinds == {"input", "parameter", "output"}


def test_a_failure_stays_open_and_passing_checks_fold(document) -> None:
    html = render_report(document)
    opening = re.findall(r'<details class="model reference ([\w, -]+)" ?(open)?>', html)
    assert opening[0] == ("failed", "open")  # failures first, open
    assert sorted(opening[1:]) == [("passed", ""), ("passed", "")]
    caught = reference_document("pytest", origin="tests/test_x.py::test_catches")
    expected = re.findall(
        r'<details class="model reference ([\w, -]+)" ?(open)?>', render_report(caught)
    )
    assert ("failed, as expected", "") in expected  # a planted bug its test expected: folded


def test_hostile_names_show_as_text_and_never_as_markup(document) -> None:
    html = render_report(document)
    page = Page(html)
    assert not [tag for tag, _ in page.tags if tag == "script"]
    assert WRONG in page.text and f"w{HOSTILE}" in page.text
    chart = _block(html, "HostileLinear vs HostileLinear (float16)")
    assert "<title>w&lt;script&gt;alert(1)&lt;/script&gt; (parameter)" in chart


def test_the_chart_draws_both_errors_and_the_limit_per_tensor_on_a_log_scale(document) -> None:
    wrong = document["references"][0]
    chart = reference_error_chart(wrong["rows"])
    assert chart.startswith("<svg") and chart.endswith("</svg>")
    candidates = re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)" r="3.5" class="candidate"', chart)
    baselines = re.findall(r'<rect x="[\d.]+" y="([\d.]+)" [^>]*class="baseline"', chart)
    assert len(candidates) == len(baselines) == len(wrong["rows"]) == 2
    x_row = next(i for i, row in enumerate(wrong["rows"]) if row["name"] == "x")
    # the wrong gradient's error (0.78) sits far above the reference's own (3e-3): smaller y
    assert float(candidates[x_row][1]) + 100 < float(baselines[x_row])
    assert '<text x="' in chart and 'class="flag">x</text>' in chart  # the failed row named
    assert re.search(r'class="tick">1e-3</text>', chart)
    assert chart.count('stroke="#57606a" stroke-width="2"/>') == 2 + 1  # allowed bars + legend
    x = wrong["rows"][x_row]
    assert (
        f"<title>x (input): implementation {x['candidate_error']:.2e}, reference "
        f"{x['baseline_error']:.2e}, allowed {x['allowed']:.2e}, failed</title>"
    ) in chart


def test_the_section_goes_through_json_failures_counts_and_the_merge(document) -> None:
    again = json.loads(json.dumps(document))
    assert render_report(again) == render_report(document)
    entry = again["references"][0]
    assert ReferenceCheckResult.from_dict(entry).to_dict() == {
        k: v for k, v in entry.items() if k != "origin"
    }
    found = failures(again)
    assert [(f["section"], f["title"], f["status"]) for f in found] == [
        ("low precision, compiled and distributed", WRONG, "failed")
    ]
    assert found[0]["reproduce"].startswith("gradcheck.check_against_reference(")
    assert again["verdict"] == "failed"
    summary = summarise(again)
    assert summary["references"] == {"failed": 1, "passed": 2}
    assert summary["reference_rows"]["failed"] == 1
    tile = Page(render_report(again)).text.split(
        "low precision, compiled and distributed tensors", 1
    )[1]
    assert tile.split("benchmarks", 1)[0].strip().startswith("1 failed,")
    check_run_document(again, "again.json")
    older = copy.deepcopy(run_document())
    del older["references"]  # written before the section existed: read as empty
    check_run_document(older, "older.json")
    assert "No low-precision, compiled or distributed check ran" in Page(render_report(older)).text
    matrix = merge_documents([again, finalize(older, 1.0)], ["new.json", "old.json"])
    keys = [row["key"] for row in matrix["rows"] if row["section"] == "references"]
    assert f"{WRONG} (cpu) :: input x" in keys
    row = next(r for r in matrix["rows"] if r["key"] == f"{WRONG} (cpu) :: input x")
    assert row["partial"] and row["cells"][0]["verdict"] == "failed"


def test_a_damaged_reference_entry_is_refused_with_its_field() -> None:
    from gradcheck.errors import InvalidArgument

    damaged = reference_document()
    del damaged["references"][1]["rows"][0]["kind"]
    with pytest.raises(InvalidArgument, match=r"references\[1\]\.rows\[0\]\.kind is missing"):
        check_run_document(damaged, "damaged.json")
