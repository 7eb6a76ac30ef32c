"""The report's layout (issue 17): passing sections fold into ``<details>``, failures stay in
view, the environment comes last, long vectors and lists of judges are summarised with the full
data one click away, the tiles say what they count, the seed reads as a number, an empty section
says why, chart dots name their tensor above a legend that leaves the data alone, and the
matrix's columns are named by what differs."""

from __future__ import annotations

import json
import re

from html_parsing import Page
from report_documents import passing_run_document, run_document

from gradcheck.report.merge import merge_documents
from gradcheck.report.render import render_matrix, render_report
from gradcheck.report.svg import layer_error_chart


def _outside_details(html: str) -> str:
    """What shows without a click: the page with the body of every closed ``<details>``
    removed (its summary stays; an open one shows whole)."""
    shown, folded, position = [], [], 0  # folded: per enclosing details, whether it is closed
    for match in re.finditer(r"<details[^>]*>|</details>|<summary[^>]*>.*?</summary>", html, re.S):
        token = match.group()
        hidden = any(folded)
        if not hidden:
            shown.append(html[position : match.start()])
        if token.startswith("<details"):
            shown.append("" if hidden else token)
            folded.append(not re.search(r"\sopen\b", token))
        elif token.startswith("</details"):
            folded.pop()
        elif not any(folded[:-1]):  # the summary of a details whose parents are open
            shown.append(token)
        position = match.end()
    shown.append(html[position:])
    return "".join(shown)


def test_passing_sections_fold_and_failures_stay_in_view() -> None:
    html = render_report(passing_run_document())
    visible = Page(_outside_details(html)).text
    assert "59 scenarios passed" in visible and "14 property tests passed" in visible
    assert "a.grad == 9*a**2" not in visible  # a passing claim is one click away
    assert "a.grad == 9*a**2" in Page(html).text
    assert "<script" not in html
    failing = render_report(run_document())
    shown = Page(_outside_details(failing)).text
    assert "w.grad == 3" in shown  # the failing scenario's claims are in view
    assert "test_relu_subgradient" in shown and "out.weight" in shown


def test_the_environment_comes_last_and_the_nav_says_so() -> None:
    page = Page(render_report(run_document()))
    assert page.ids[-1] == "environment"
    assert "environment (last)" in page.text


def test_long_vectors_and_many_judges_are_summarised_with_the_rest_one_click_away() -> None:
    html = render_report(passing_run_document())
    visible = Page(_outside_details(html)).text
    row = next(
        text
        for _, text in Page(html).rows_after("scenarios")
        if text.startswith("ok optimizer step")
    )
    assert "0, 0.125, 0.25, … (20 values)" in row  # the first numbers and the length
    assert "2.375" in Page(html).text and "2.375" not in visible  # the rest, one click away
    assert "worst of 62 judges: show all" in row
    assert row.count("sympy @a.grad") == 63  # the worst, then all 62 inside the details


def test_the_tiles_say_what_they_count_and_the_seed_reads_as_a_number() -> None:
    page = Page(render_report(passing_run_document()))
    tiles = [text for text in page.texts if text.strip()]
    assert "property tests" in tiles and "tests" not in tiles
    assert "notebook scenarios" in tiles and "device parity checks" in tiles
    assert "0 (set by --hypothesis-seed)" in page.text
    assert "--hypothesis-seed=0" not in page.text


def test_a_section_that_did_not_run_says_why() -> None:
    text = Page(render_report(passing_run_document())).text
    assert "No device parity check ran: device parity compares devices" in text
    assert "No benchmark ran: not among this run's sections" in text and "add --bench" in text
    skipped = passing_run_document()
    skipped["models"] = []
    skipped["skipped"].append({"section": "models", "reason": "torchvision is not installed"})
    assert "No model check ran: torchvision is not installed." in Page(render_report(skipped)).text


def test_chart_dots_name_their_tensor_and_the_legend_sits_above_the_plot() -> None:
    model = run_document()["models"][0]
    chart = layer_error_chart(model["rows"])
    for row in model["rows"]:
        assert f"<title>{row['name']}: relative error" in chart
    plot_top = float(re.search(r'<rect x="\d+" y="([\d.]+)"', chart).group(1))
    legend_y = float(
        re.search(r'class="legend" transform="translate\([\d.]+,([-\d.]+)\)', chart)[1]
    )
    assert legend_y + 4 < plot_top  # the legend's text and dots end above the plotted area


def test_matrix_columns_are_named_by_what_differs_torch_first() -> None:
    old, new = run_document(torch_version="2.13.0"), run_document(flip=True)
    new["environment"]["python"] = "CPython 3.12.1"
    matrix = json.loads(json.dumps(merge_documents([new, old], ["b.json", "a.json"])))
    page = Page(render_matrix(matrix))
    runs = [" ".join(texts) for _, texts in page.rows[1:3]]  # the runs table, one row per run
    assert runs[0].startswith("torch 2.14.1 · python CPython 3.12.1 ")
    assert runs[1].startswith("torch 2.13.0 · python CPython 3.11.7 ")
    columns = " ".join(page.rows[3][1])  # the differences table's heading row
    assert columns.index("torch 2.14.1 · python CPython 3.12.1") < columns.index("torch 2.13.0")
    assert ("td", {"class": "section"}) in page.tags  # the section column does not wrap
