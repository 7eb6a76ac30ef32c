"""The report of ``gradcheck ops``, rendered from a real run over planted OpInfo records and
read back with html.parser: the verdict, every disagreement first (unexplained, then those
with a known reason), per-op rows, the skipped ops, and escaped text everywhere."""

from __future__ import annotations

import copy
import json

import pytest
from html_parsing import Page

pytest.importorskip(
    "expecttest", reason="gradcheck ops needs expecttest: pip install 'gradcheck[ops]'"
)

from ops_planted import HOSTILE, HOSTILE_NAME

from gradcheck.ops import check_ops
from gradcheck.ops.classify import summarise
from gradcheck.report.ops import ops_document
from gradcheck.report.render import render_report

COMMAND = "gradcheck ops --op '<b>x</b>'"


@pytest.fixture(scope="module")
def result() -> dict:
    return check_ops(database=HOSTILE, samples=2, isolate=False).to_dict()


def _document(result: dict) -> dict:
    return ops_document(result, command=COMMAND, environment={"torch": "2.x & <i>y</i>"})


def _with_known_reason(result: dict) -> dict:
    """The run with planted.sin_bug's second sample explained (as a known table entry would)."""
    changed = copy.deepcopy(result)
    for row in changed["rows"]:
        if row["key"] == "planted.sin_bug" and row["sample"] == 1:
            row["reason"], row["unexplained"] = "torch-bug: planted <reason> & more", False
    changed["summary"] = summarise(changed["rows"], changed["skipped"])
    return changed


def test_the_page_leads_with_the_verdict_and_every_disagreement_first(result) -> None:
    page = Page(render_report(_document(result)))
    assert page.ids[:2] == ["verdict", "summary"]
    assert page.ids.index("causes") < page.ids.index("disagreements") < page.ids.index("ops")
    verdict = page.text.split("gradcheck against torch.autograd.gradcheck")[0]
    assert "failed" in verdict
    rows = page.rows_after("disagreements", before="others")
    keys = [text.split(" ")[1] for cls, text in rows if cls == "failed" and "#" in text]
    assert keys[:2] == ["planted.sin_bug", "planted.sin_bug"]
    assert {"planted.sin"}.isdisjoint(keys)
    per_op = page.rows_after("ops", before="skipped")
    assert per_op[1][0] == "failed" and per_op[-1][0] == "passed"
    assert per_op[-1][1].startswith("planted.sin #0 agree-pass; #1 agree-pass")
    assert "planted.skipped torch's OpInfo skips test_fn_grad here (planted skip)" in page.text


def test_a_known_reason_is_shown_after_the_unexplained_ones(result) -> None:
    page = Page(render_report(_document(_with_known_reason(result))))
    rows = page.rows_after("disagreements", before="others")
    classes = [cls for cls, text in rows if "#" in text]
    assert classes.index("expected") > max(i for i, c in enumerate(classes) if c == "failed")
    assert "Reason: torch-bug: planted <reason> & more" in page.text


def test_every_text_is_escaped(result) -> None:
    html = render_report(_document(_with_known_reason(result)))
    assert "<script>" not in html and "<b>x</b>" not in html and "<reason>" not in html
    page = Page(html)
    assert f"{HOSTILE_NAME} #0" in page.text and COMMAND in page.text
    assert "2.x & <i>y</i>" in page.text
    assert json.loads(json.dumps(_document(result)))["kind"] == "ops"


def test_the_median_time_ratio_reads_as_a_short_multiple(result) -> None:
    document = _document(result)
    document["ops"]["summary"]["median_time_ratio"] = 11.229429
    page = Page(render_report(document))
    assert "11.2x over" in page.text and "11.229429" not in page.text
