"""``gradcheck run`` folds property tests (a pytest child process) and model checks into one
report, and a failing model check or property fails the run with a reproduce line."""

from __future__ import annotations

import json

import torch
from html_parsing import Page
from report_documents import PlantedMLP

import gradcheck.runner
import gradcheck.zoo
from gradcheck.cli import main

PROPERTIES = """
from hypothesis import given, settings, strategies as st


@settings(max_examples=12, database=None)
@given(st.integers(0, 100))
def test_holds(n):
    assert n >= 0


@settings(max_examples=30, database=None)
@given(st.integers(0, 100))
def test_breaks(n):
    assert n < 50
"""

CONFTEST = "from gradcheck.strategies import register_profiles\n\nregister_profiles()\n"


def test_properties_and_models_land_in_one_report(tmp_path, monkeypatch, capsys) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "properties").mkdir(parents=True)
    (checkout / "properties" / "test_tiny.py").write_text(PROPERTIES)
    (checkout / "properties" / "conftest.py").write_text(CONFTEST)
    monkeypatch.setattr(gradcheck.runner, "source_root", lambda section: checkout)

    def planted(name, *, seed=0, **_):  # type: ignore[no-untyped-def]
        return PlantedMLP(), torch.randn(5, 4, generator=torch.Generator().manual_seed(seed))

    monkeypatch.setattr(gradcheck.zoo, "build_model", planted)
    report = tmp_path / "out" / "report.html"
    arguments = ["run", "--only", "properties", "models", "-k", "eval", "--report", str(report)]
    assert main(arguments) == 1
    printed = capsys.readouterr().out
    assert "FAILED models: model/resnet18/eval/cpu" in printed
    assert "reproduce: gradcheck model resnet18 --mode eval --device cpu" in printed
    document = json.loads(report.with_suffix(".json").read_text())
    assert document["verdict"] == "failed"
    assert [m["label"] for m in document["models"]] == ["model/resnet18/eval/cpu"]  # -k eval
    assert document["models"][0]["rows"][3]["status"] == "failed"  # out.weight
    # -k eval deselects both property tests in the child: exit status 5 is "nothing selected"
    assert document["tests"] == []

    assert main(["run", "--only", "properties", "--report", str(report), "--seed", "3"]) == 1
    document = json.loads(report.with_suffix(".json").read_text())
    tests = {t["nodeid"]: t for t in document["tests"]}
    holds, breaks = (
        tests["properties/test_tiny.py::test_holds"],
        tests["properties/test_tiny.py::test_breaks"],
    )
    assert holds["outcome"] == "passed" and holds["suite"] == "properties"
    assert holds["hypothesis"]["passing"] == 12
    assert breaks["outcome"] == "failed" and "n=50" in breaks["falsifying_example"]
    assert document["environment"]["hypothesis_seed"] == "--hypothesis-seed=3"
    page = Page(report.read_text())
    assert "test_breaks" in page.text.split("read these first", 1)[1].split("Environment")[0]


BENCHMARK = """
def test_tiny(benchmark):
    benchmark.extra_info["judge"] = "check_function"
    benchmark(sum, range(10))
"""


def test_bench_json_and_report_json_never_share_a_file(tmp_path, monkeypatch) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "benchmarks").mkdir(parents=True)
    (checkout / "benchmarks" / "test_bench_tiny.py").write_text(BENCHMARK)
    monkeypatch.setattr(gradcheck.runner, "source_root", lambda section: checkout)
    out = tmp_path / "out"
    assert gradcheck.runner.benchmark_json_beside(out / "report.html") == out / "benchmarks.json"
    report = out / "benchmarks.html"  # its own JSON is benchmarks.json
    assert main(["run", "--only", "benchmarks", "--report", str(report)]) == 0
    document = json.loads((out / "benchmarks.json").read_text())
    assert document["kind"] != "pytest-benchmark" and "verdict" in document  # the run document
    assert [b["name"] for b in document["benchmarks"]] == ["test_tiny"]
    pytest_benchmark = json.loads((out / "pytest-benchmark.json").read_text())
    assert [b["name"] for b in pytest_benchmark["benchmarks"]] == ["test_tiny"]
    assert "machine_info" in pytest_benchmark


SLOW_PROPERTY = """
import time


def test_sleeps():
    time.sleep(60)
"""


def test_the_property_child_runs_alongside_and_is_stopped_when_the_run_is(
    tmp_path, monkeypatch, capsys
) -> None:
    import pytest

    checkout = tmp_path / "checkout"
    (checkout / "properties").mkdir(parents=True)
    (checkout / "properties" / "test_slow.py").write_text(SLOW_PROPERTY)
    monkeypatch.setattr(gradcheck.runner, "source_root", lambda section: checkout)
    started = []
    original = gradcheck.runner.start_pytest_section

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        child = original(*args, **kwargs)
        started.append(child)
        return child

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        (child,) = started
        assert child.process.poll() is None  # the property tests are under way meanwhile
        raise KeyboardInterrupt

    monkeypatch.setattr(gradcheck.runner, "start_pytest_section", recording)
    monkeypatch.setattr(gradcheck.runner, "run_scenarios", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(["run", "--only", "scenarios", "properties", "--report", str(tmp_path / "r.html")])
    (child,) = started
    assert child.process.poll() is not None and not child.scratch.exists()
    assert "alongside the sections below" in capsys.readouterr().out
