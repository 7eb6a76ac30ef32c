"""A real browser opens the report and the matrix (headless Chromium): the DOM it builds has
the verdict and the failures first and no script, and it paints a screenshot. Skips, with the
install command, where Chromium is not on the PATH."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess

import pytest
from html_parsing import Page
from report_documents import HOSTILE, passing_run_document, run_document

from gradcheck.report.document import failures, finalize
from gradcheck.report.merge import merge_documents
from gradcheck.report.render import render_matrix, render_report

BROWSER = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
pytestmark = pytest.mark.skipif(
    BROWSER is None,
    reason="no chromium on the PATH (apt-get update && apt-get install -y chromium)",
)
WINDOW = (1280, 900)


def _browser(*arguments: str) -> str:
    completed = subprocess.run(
        [
            str(BROWSER),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


def _png_size(path) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def _open(tmp_path, name: str, html: str) -> Page:  # type: ignore[no-untyped-def]
    page = tmp_path / f"{name}.html"
    page.write_text(html, encoding="utf-8")
    screenshot = tmp_path / f"{name}.png"
    _browser(f"--screenshot={screenshot}", f"--window-size={WINDOW[0]},{WINDOW[1]}", page.as_uri())
    assert _png_size(screenshot) == WINDOW
    assert screenshot.stat().st_size > 20_000  # painted content, not a blank page
    return Page(_browser("--dump-dom", page.as_uri()))


def test_the_browser_reads_the_report_failures_first(tmp_path) -> None:
    dom = _open(tmp_path, "report", render_report(run_document()))
    assert dom.ids[:2] == ["verdict", "failures"]
    body = dom.text.split("gradcheck correctness report — recorded run", 1)[1]
    assert "failed gradcheck correctness report" in dom.text
    assert body.index("3 failures — read these first") < body.index("Environment")
    assert not [tag for tag, _ in dom.tags if tag == "script"]
    assert f"w.grad == 3 {HOSTILE}" in dom.text
    assert [tag for tag, _ in dom.tags].count("svg") == 2  # the layer chart and the benchmarks


def test_the_browser_reads_the_matrix(tmp_path) -> None:
    matrix = merge_documents(
        [run_document(torch_version="2.13.0"), run_document(flip=True)], ["a.json", "b.json"]
    )
    dom = _open(tmp_path, "matrix", render_matrix(json.loads(json.dumps(matrix))))
    assert dom.ids[0] == "verdict" and "1 differ" in dom.text
    assert "verdicts differ" in dom.text and "torch 2.13.0" in dom.text


MEASURE = """<script>
document.body.setAttribute("data-measured", JSON.stringify({
  height: document.documentElement.scrollHeight,
  failures: [...document.querySelectorAll(".failure")].map(f => f.getBoundingClientRect().bottom),
}));
</script>"""
"""Appended to a copy of the page under test only: the report itself has no script."""
SCREEN = (1400, 900)
"""The window the report is judged in: 1400 px wide, the first screen 900 px tall."""


def _measure(tmp_path, html: str) -> dict:  # type: ignore[no-untyped-def]
    page = tmp_path / "measured.html"
    page.write_text(html + MEASURE, encoding="utf-8")
    dom = _browser(
        f"--window-size={SCREEN[0]},{SCREEN[1]}",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--dump-dom",
        page.as_uri(),
    )
    found = Page(dom).tags
    body = next(attributes for tag, attributes in found if tag == "body")
    return json.loads(str(body["data-measured"]))


def test_the_default_report_all_passing_is_at_most_6000px_tall(tmp_path) -> None:
    measured = _measure(tmp_path, render_report(passing_run_document()))
    assert measured["height"] <= 6000, measured


def _failing_default_run() -> dict:
    """The default run's document with the planted failures of :func:`run_document` in it: a
    failing scenario, a model check that caught a wrong backward, a failing property test."""
    document = passing_run_document()
    planted = run_document()
    document["scenarios"] += [s for s in planted["scenarios"] if s["status"] == "failed"]
    document["models"] += planted["models"]
    document["tests"] += [t for t in planted["tests"] if t["outcome"] == "failed"]
    return finalize(document, 300.0)


def test_a_failing_report_shows_every_failure_on_the_first_screen(tmp_path) -> None:
    document = _failing_default_run()
    measured = _measure(tmp_path, render_report(document))
    assert len(measured["failures"]) == len(failures(document)) == 3
    assert max(measured["failures"]) <= SCREEN[1], measured
