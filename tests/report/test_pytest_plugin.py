"""The pytest plugin, run on a planted test module: outcomes, recorded checks, Hypothesis
statistics and shrunk examples, the fixture, escaping; the same report under xdist; and nothing
heavy imported when the option is absent."""

from __future__ import annotations

import json

import pytest
import torch  # noqa: F401  (imported before pytester's in-process runs: they restore sys.modules,

#              and torch cannot be imported a second time into one process)
from html_parsing import Page
from planted_module import PLANTED_PRELUDE

TESTS = (
    PLANTED_PRELUDE
    + """

@settings(max_examples=10, derandomize=True, database=None)
@given(st.floats(-2, 2))
def test_property_holds(v):
    assert check_function(torch.sin, torch.tensor([v], dtype=torch.float64)).passed


@settings(max_examples=50, derandomize=True, database=None)
@given(st.floats(0, 10))
def test_property_fails(v):
    assert v < 5


@pytest.mark.parametrize("name", ["<script>alert(1)</script>"])
def test_named(name):
    assert name


def test_fixture_records(gradcheck_report):
    assert gradcheck_report.active
    gradcheck_report.record(check_function(torch.exp, X, name="exp_by_fixture"))


@pytest.mark.skip(reason="shown as skipped")
def test_skipped():
    pass


@pytest.mark.xfail(strict=True, reason="known")
def test_known_failure():
    assert False
"""
)

EXPECTED = {
    "test_planted_bug_is_caught": "passed",
    "test_sin_is_right": "passed",
    "test_fails_on_purpose": "failed",
    "test_property_holds": "passed",
    "test_property_fails": "failed",
    "test_named[<script>alert(1)</script>]": "passed",
    "test_fixture_records": "passed",
    "test_skipped": "skipped",
    "test_known_failure": "xfailed",
}


def _tests_by_name(document: dict) -> dict[str, dict]:
    return {test["nodeid"].split("::", 1)[1]: test for test in document["tests"]}


def _assert_report(pytester: pytest.Pytester, report) -> None:  # type: ignore[no-untyped-def]
    document = json.loads(report.with_suffix(".json").read_text())
    tests = _tests_by_name(document)
    assert {name: test["outcome"] for name, test in tests.items()} == EXPECTED
    assert document["verdict"] == "failed" and document["kind"] == "pytest"
    planted = tests["test_planted_bug_is_caught"]["checks"]
    assert planted["counts"] == {"failed": 1} and planted["failures"][0]["name"] == "wrong_sin"
    on_purpose = tests["test_fails_on_purpose"]
    assert on_purpose["checks"]["counts"] == {"failed": 1}  # published before the raise
    assert "Gradient mismatch" in on_purpose["message"]
    holds = tests["test_property_holds"]
    assert holds["hypothesis"]["passing"] >= 10 and holds["hypothesis"]["failing"] == 0
    assert (
        holds["checks"]["counts"]["passed"]
        == holds["hypothesis"]["examples"] - holds["hypothesis"]["invalid"]
    )
    fails = tests["test_property_fails"]
    assert fails["hypothesis"]["failing"] >= 1
    assert "test_property_fails(\n    v=5.0," in fails["falsifying_example"]
    assert tests["test_fixture_records"]["checks"]["closest"]["name"] == "exp_by_fixture"
    assert "shown as skipped" in tests["test_skipped"]["message"]
    environment = document["environment"]
    assert environment["torch"] and environment["python"].startswith("CPython")
    assert environment["hypothesis_profile"] and environment["git_commit"]
    page = Page(report.read_text())
    assert not [tag for tag, _ in page.tags if tag == "script"]
    assert "test_named[<script>alert(1)</script>]" in page.text
    failures = page.text.split("read these first", 1)[1].split("Environment", 1)[0]
    assert "test_fails_on_purpose" in failures and "test_property_fails" in failures


def test_report_of_a_plain_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_planted=TESTS)
    report = pytester.path / "out" / "report.html"
    result = pytester.runpytest("--gradcheck-report", str(report), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, failed=2, skipped=1, xfailed=1)
    result.stdout.fnmatch_lines(["*gradcheck report: *report.html*"])
    _assert_report(pytester, report)


def test_report_under_xdist_is_written_once_by_the_controller(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_planted=TESTS)
    report = pytester.path / "out" / "report.html"
    result = pytester.runpytest_subprocess(
        "-n", "2", "--gradcheck-report", str(report), "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=5, failed=2, skipped=1, xfailed=1)
    assert sorted(p.name for p in report.parent.iterdir()) == ["report.html", "report.json"]
    _assert_report(pytester, report)


def test_a_json_path_writes_only_json(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_one="def test_one():\n    assert True\n")
    target = pytester.path / "run.json"
    pytester.runpytest("--gradcheck-report", str(target)).assert_outcomes(passed=1)
    assert json.loads(target.read_text())["verdict"] == "passed"
    assert not target.with_suffix(".html").exists()


def test_without_the_option_nothing_heavy_is_imported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_light="""
import sys

import pytest

def test_nothing_heavy_loaded(gradcheck_report):
    assert not gradcheck_report.active
    with pytest.raises(TypeError, match="takes a gradcheck result .* got object"):
        gradcheck_report.record(object())
    heavy = {"torch", "sympy", "jinja2"} & set(sys.modules)
    assert not heavy, heavy
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not list(pytester.path.rglob("*.html"))
    help_text = pytester.runpytest_subprocess("--help").stdout.str()
    assert "--gradcheck-report=PATH" in help_text


def test_teardown_errors_and_interruptions_are_not_lost(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_edges="""
import pytest

@pytest.fixture
def breaks_on_teardown():
    yield
    raise RuntimeError("teardown boom")

def test_fails_then_teardown_fails(breaks_on_teardown):
    assert False, "call failure message"

@pytest.mark.xfail(run=False, reason="not run: known crash")
def test_not_run():
    pass

def test_interrupts():
    raise KeyboardInterrupt
"""
    )
    target = pytester.path / "edges.json"
    pytester.runpytest_subprocess("--gradcheck-report", str(target), "-p", "no:cacheprovider")
    document = json.loads(target.read_text())
    tests = {t["nodeid"].split("::")[-1]: t for t in document["tests"]}
    both = tests["test_fails_then_teardown_fails"]
    assert both["outcome"] == "failed"
    assert "call failure message" in both["message"] and "teardown boom" in both["message"]
    assert tests["test_not_run"]["message"].endswith("not run: known crash")
    assert tests["test_interrupts"]["outcome"] == "error"
    assert "did not finish" in tests["test_interrupts"]["message"]
    assert tests["<pytest session>"]["message"].startswith("pytest exited with status 2")
    assert document["verdict"] == "failed"


BENCHMARKED = """
import pytest
import torch


class Workload:
    def __repr__(self):
        return "Workload(" + "x" * 500 + ")"


@pytest.mark.parametrize("workload", [Workload()], ids=["w"])
@pytest.mark.parametrize("dtype", [torch.float32], ids=["float32"])
def test_step(benchmark, workload, dtype):
    benchmark.group = "steps"
    benchmark.extra_info.update(
        dtype=dtype, forward_s=1e-3, backward_s=2e-3, backward_over_forward=2.0, samples_per_s=1e3
    )
    benchmark.pedantic(lambda: None, rounds=3, iterations=1)
"""


def test_benchmarks_parametrized_with_objects_are_reported(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pytest_benchmark")
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # else pytest-benchmark turns off
    from gradcheck.jsonsafe import REPR_CHARS

    pytester.makepyfile(test_bench=BENCHMARKED)
    report = pytester.path / "report.html"
    result = pytester.runpytest("--gradcheck-report", str(report), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    (entry,) = json.loads(report.with_suffix(".json").read_text())["benchmarks"]
    assert entry["params"]["dtype"] == entry["extra_info"]["dtype"] == "torch.float32"
    workload = entry["params"]["workload"]
    assert workload.startswith("Workload(xxx") and len(workload) == REPR_CHARS
    page = Page(report.read_text())
    assert "2x: a well-implemented backward" in page.text and "1,000 samples/s" in page.text


def test_benchmark_json_on_the_reports_json_is_refused(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pytest_benchmark")
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.makepyfile(test_bench=BENCHMARKED)
    report = pytester.path / "bench.html"
    result = pytester.runpytest(
        "--gradcheck-report", str(report), "--benchmark-json", str(pytester.path / "bench.json")
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--benchmark-json*is where --gradcheck-report*writes its JSON*now empty*"]
    )
    other = pytester.runpytest(
        "--gradcheck-report", str(report), "--benchmark-json", str(pytester.path / "pb.json")
    )
    other.assert_outcomes(passed=1)
    assert json.loads(report.with_suffix(".json").read_text())["verdict"] == "passed"
