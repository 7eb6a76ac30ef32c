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
from report_documents import HOSTILE, run_document

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
