"""The pytest plugin's report shows what each test recorded: the checks' messages per test
(collapsed for passing tests), a planted bug that was caught as "failed, as expected", a result
recorded twice counted once, a gradcheck failure opening at its message, and the tests of a
crashed xdist worker listed as having lost their results."""

from __future__ import annotations

import json

import pytest
import torch  # noqa: F401  (imported before pytester's in-process runs; see test_pytest_plugin)
from html_parsing import Page
from planted_module import PLANTED_PRELUDE

TESTS = (
    PLANTED_PRELUDE
    + """

def test_recorded_twice(gradcheck_report):
    result = check_function(torch.exp, X, name="exp_twice")
    gradcheck_report.record(result)
    gradcheck_report.record(result)
"""
)


def _run(pytester: pytest.Pytester, source: str, *arguments: str):  # type: ignore[no-untyped-def]
    pytester.makepyfile(test_planted=source)
    report = pytester.path / "out" / "report.html"
    result = pytester.runpytest_subprocess(
        "--gradcheck-report", str(report), "-p", "no:cacheprovider", *arguments
    )
    document = json.loads(report.with_suffix(".json").read_text())
    tests = {test["nodeid"].split("::", 1)[-1]: test for test in document["tests"]}
    return result, tests, report.read_text()


def _test_block(html: str, name: str) -> str:
    """The HTML of the one per-test block of test ``name``."""
    start = html.index(f'id="test-test_planted.py::{name}"')
    end = html.find('<details class="test', start + 1)
    return html[start : end if end > 0 else len(html)]


def test_each_test_shows_its_checks_messages(pytester: pytest.Pytester) -> None:
    _, _, html = _run(pytester, TESTS)
    caught = _test_block(html, "test_planted_bug_is_caught")
    assert "failed, as expected" in Page(caught).text
    assert "wrong_sin" in caught and "Gradient mismatch" in caught
    assert "reproduce: " in caught and "check_function" in caught
    right = _test_block(html, "test_sin_is_right")
    assert (
        '<b class="mono">sin</b>' in right and " open" not in right.split(">", 1)[0]
    )  # passing: collapsed
    failing = _test_block(html, "test_fails_on_purpose")
    assert failing.split(">", 1)[0].endswith(" open")  # a failing test is open


def test_a_result_recorded_twice_counts_once(pytester: pytest.Pytester) -> None:
    _, tests, _ = _run(pytester, TESTS, "-k", "recorded_twice")
    assert tests["test_recorded_twice"]["checks"]["counts"] == {"passed": 1}


def test_a_gradcheck_failure_opens_at_its_message(pytester: pytest.Pytester) -> None:
    _, tests, html = _run(pytester, TESTS)
    message = tests["test_fails_on_purpose"]["message"]
    assert message.startswith("GradientMismatch: Gradient mismatch"), message[:300]
    opening = message.split("raised in:", 1)
    assert len(opening) == 2 and "test_planted.py" in opening[1]
    assert "gradcheck/results.py" not in message  # gradcheck's internal frames left out
    assert "gradcheck/results.py" in tests["test_fails_on_purpose"]["traceback"]  # kept beside
    box = html.split("read these first", 1)[1]
    assert box.split("<pre>", 1)[1].startswith("GradientMismatch: Gradient mismatch")


CRASHING = """
import os

import torch

from gradcheck import check_function

X = torch.linspace(0.1, 1.0, 4, dtype=torch.float64)


def test_a_records():
    assert check_function(torch.sin, X, name="lost_sin").passed


def test_b_crashes():
    os._exit(3)


def test_c_after():
    assert check_function(torch.cos, X, name="kept_cos").passed
"""


def test_the_results_of_a_crashed_xdist_worker_are_reported_missing(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("xdist")
    _, tests, html = _run(pytester, CRASHING, "-n", "1")
    lost = [test for name, test in tests.items() if name.startswith("<xdist worker")]
    assert len(lost) == 1 and lost[0]["outcome"] == "error"
    assert "test_planted.py::test_a_records" in lost[0]["message"]
    assert "missing" in lost[0]["message"]
    assert tests["test_a_records"]["results_missing"].endswith("crashed")
    assert "results missing" in Page(html).text
