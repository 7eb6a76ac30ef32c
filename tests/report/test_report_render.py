"""The HTML report, rendered from recorded results and read back with html.parser: every
scenario with its numbers, failures first, escaping, self-contained, charts on a log scale."""

from __future__ import annotations

import json

from html_parsing import Page
from report_documents import HOSTILE, planted_model_result, run_document

from gradcheck.report.document import finalize, new_document
from gradcheck.report.render import num, pct, render_report, sci


def _page(document: dict) -> Page:
    return Page(render_report(document))


def test_every_scenario_appears_with_its_stated_measured_and_oracle_numbers() -> None:
    document = run_document()
    page = _page(document)
    for scenario in document["scenarios"]:
        assert scenario["id"] in page.text
        for claim in scenario["claims"]:
            assert " ".join(claim["statement"].split()) in page.text
            for stated in claim["stated"] or ():
                assert stated in page.text
            for measured in claim["measured"] or ():
                assert num(measured) in page.text
            for check in claim["checks"]:
                worst = check["worst"]
                assert f"{num(worst['oracle'])} (|diff| {sci(worst['abs_error'])}" in page.text
    cubic = next(row for cls, row in page.rows_after("scenarios") if "a.grad == 9*a**2" in row)
    assert "36., 81." in cubic and "sympy" in cubic and "finite_difference" in cubic


def test_failures_come_first_on_the_page_and_in_every_table() -> None:
    page = _page(run_document())
    assert page.ids.index("verdict") < page.ids.index("failures") < page.ids.index("environment")
    assert page.ids.index("failures") < page.ids.index("scenarios")
    titles = page.text.split("read these first", 1)[1].split("tests ", 1)[0]
    assert (
        titles.index("planted/broken_")
        < titles.index("model/planted_mlp")
        < titles.index("test_relu_subgradient")
    )
    claims = page.rows_after("scenarios", before="properties")
    assert claims[1][0] == "failed" and claims[-1][0] != "failed"
    properties = page.rows_after("properties", before="models")
    assert properties[1][0] == "failed" and "properties/test_prop_kinks.py" in properties[1][1]
    assert "Falsifying example: test_relu_subgradient(x=0.0)" in page.text


def test_hostile_text_is_escaped_everywhere() -> None:
    html = render_report(run_document())
    page = Page(html)
    assert not [tag for tag, _ in page.tags if tag == "script"]
    assert f"w.grad == 3 {HOSTILE}" in page.text
    assert f"tests/test_names.py::test_{HOSTILE}" in page.text
    assert f"test_backward[{HOSTILE}]" in page.text  # inside the SVG chart and the table
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_page_is_self_contained() -> None:
    page = _page(run_document())
    for tag, attributes in page.tags:
        assert tag not in ("link", "img", "iframe", "script", "object")
        assert not attributes.get("src"), (tag, attributes)
        assert str(attributes.get("href") or "#").startswith("#"), (tag, attributes)  # in-page
    assert ("style", {}) in page.tags


def test_model_section_has_the_per_tensor_table_and_a_log_scale_chart() -> None:
    page = _page(run_document())
    charts = [a for tag, a in page.tags if tag == "svg"]
    assert any("relative error per tensor" in str(a.get("aria-label")) for a in charts)
    assert any("log scale" in str(a.get("aria-label")) for a in charts)
    assert "1e-12" in page.text and "out.weight" in page.text
    rows = page.rows_after("models", before="parity")
    failed = [text for cls, text in rows if cls == "failed"]
    assert len(failed) == 1 and "out.weight" in failed[0]
    assert sum(cls == "passed" for cls, _ in rows) == 4


def test_a_pytest_report_names_the_test_that_recorded_a_result() -> None:
    document = new_document("pytest", title="pytest run", command="pytest")
    nodeid = "tests/test_planted.py::test_catches_the_planted_bug"
    document["models"].append({**planted_model_result().to_dict(), "origin": nodeid})
    document["tests"].append({"nodeid": nodeid, "outcome": "passed", "suite": "tests"})
    page = _page(finalize(document, 1.0))
    assert f"recorded in test {nodeid} (test passed)" in page.text
    assert "No failures" in page.text
    expected = ("span", {"class": "status failed, expected"})
    assert expected in page.tags  # the planted bug the test caught, not a red failure
    document["tests"][0]["outcome"] = "failed"
    page = _page(finalize(document, 1.0))
    assert expected not in page.tags and "1 failure — read these first" in page.text


def test_formatting_helpers() -> None:
    assert sci(None) == "-" and sci("nan") == "-" and sci(0.0) == "0" and sci(1.5e-7) == "1.5e-07"
    assert pct(0.25) == "25%" and pct(4311.0) == "4.31e+03x" and pct(None) == "-"
    assert json.loads(json.dumps(run_document()))  # the document is plain JSON


def test_undecided_and_exact_rows_sit_on_the_chart_floor() -> None:
    from gradcheck.report.svg import layer_error_chart

    rows = [
        {
            "name": "a",
            "status": "inconclusive",
            "relative_error": "nan",
            "oracle": 1.0,
            "allowed": 1e-6,
        },
        {"name": "b", "status": "passed", "relative_error": 0.0, "oracle": "nan", "allowed": 1e-6},
    ]
    chart = layer_error_chart(rows)
    assert "nan" not in chart.lower()
    assert chart.count('fill="none"') == 3  # both rows hollow on the floor, and the legend
    assert "a: relative error undecided, tolerance 1.00e-06" in chart
    assert "b: relative error 0, tolerance undecided" in chart
