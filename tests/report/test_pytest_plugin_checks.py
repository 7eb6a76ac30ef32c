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


REFERENCE_TESTS = """
import torch

from gradcheck import check_against_reference


class SoftmaxMissingTerm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.softmax(x, -1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return y * grad  # misses - y * sum(y * grad)


def wrong_softmax(x):
    return SoftmaxMissingTerm.apply(x)


def softmax(x):
    return torch.softmax(x, -1)


X = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))


def test_wrong_softmax_is_caught():
    result = check_against_reference(wrong_softmax, softmax, X, dtype=torch.bfloat16)
    assert result.status == "failed"


def test_softmax_holds(gradcheck_report):
    result = check_against_reference(softmax, softmax, X, dtype=torch.float16)
    gradcheck_report.record(result)  # published by the check too: counted once
    assert result.passed
"""


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["plain", "xdist"])
def test_reference_checks_are_recorded_in_their_section(
    pytester: pytest.Pytester, workers: tuple[str, ...]
) -> None:
    if workers:
        pytest.importorskip("xdist")
    result, tests, html = _run(pytester, REFERENCE_TESTS, *workers)
    result.assert_outcomes(passed=2)
    document = json.loads((pytester.path / "out" / "report.json").read_text())
    origins = sorted((r["origin"].split("::")[-1], r["status"]) for r in document["references"])
    assert origins == [("test_softmax_holds", "passed"), ("test_wrong_softmax_is_caught", "failed")]
    assert document["summary"]["references"] == {"failed": 1, "passed": 1}
    assert document["verdict"] == "passed"  # the failure was the test's evidence
    assert not any(test.get("checks") for test in tests.values())  # not tallied as a CheckResult
    page = Page(html)
    section = page.text.split("Low precision, compiled and distributed (2)", 1)[1].split(
        "Benchmarks", 1
    )[0]
    assert "failed, as expected wrong_softmax vs softmax (bfloat16)" in section
    assert "passed softmax vs softmax (float16)" in section
    assert "recorded in test test_planted.py::test_wrong_softmax_is_caught (test passed)" in section


SECOND_ORDER_TEST = """
import torch
from gradcheck import check_function


class Detached(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * grad * x.detach() ** 2


def test_second_order_bug():
    x = torch.tensor([0.5, -1.0], dtype=torch.float64)
    assert check_function(Detached.apply, x, order=2).status == "failed"
"""


def test_a_check_of_several_derivatives_shows_the_failing_part(pytester: pytest.Pytester) -> None:
    _, tests, html = _run(pytester, SECOND_ORDER_TEST)
    block = Page(_test_block(html, "test_second_order_bug")).text
    assert "failed, as expected" in block
    assert "VJP of VJP" in block and "detaches what it saved" in block
    shown = tests["test_second_order_bug"]["checks"]["shown"][0]
    assert shown["status"] == "failed" and "VJP passed, VJP of VJP failed" in shown["message"]
