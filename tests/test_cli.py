"""The ``gradcheck`` command: ``run`` (table, JSON results, exit codes) and ``list``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from gradcheck.cli import main
from gradcheck.results import Claim, ScenarioResult


def _run(tmp_path, *arguments: str) -> int:
    return main(["run", "--only", "scenarios", "--report", str(tmp_path / "r.html"), *arguments])


def test_run_prints_a_summary_and_writes_the_report_and_json(tmp_path, capsys) -> None:
    assert _run(tmp_path, "-k", "calculus/sin", "--verbose") == 0
    printed = capsys.readouterr().out
    assert "calculus/sin " in printed and "calculus/sin_large_argument" in printed  # --verbose
    assert "scenarios      2 passed" in printed and "claims: 6 passed" in printed
    assert "verdict: PASSED" in printed and str(tmp_path / "r.html") in printed
    data = json.loads((tmp_path / "r.json").read_text())
    results = [ScenarioResult.from_dict(s) for s in data["scenarios"]]
    oracles = {c.oracle for r in results for claim in r.claims for c in claim.checks}
    assert oracles == {"finite_difference", "sympy", "forward"}
    assert all(r.passed for r in results) and data["verdict"] == "passed"
    assert "calculus/sin_large_argument" in (tmp_path / "r.html").read_text()


def test_planted_bugs_show_as_caught(tmp_path, capsys) -> None:
    assert _run(tmp_path, "-k", "planted/relu", "--verbose") == 0
    assert "the planted bug is caught by sympy" in capsys.readouterr().out


def test_a_claim_that_does_not_hold_exits_non_zero(tmp_path, monkeypatch, capsys) -> None:
    import gradcheck.scenarios.base as base

    def broken(scenario, *, seed=0):
        claim = Claim("w.grad == 3", False, "measured 4")
        return ScenarioResult(scenario.id, scenario.topic, "failed", (claim,), seed, 0.0)

    monkeypatch.setattr(base, "run_scenario", broken)
    monkeypatch.setattr("gradcheck.scenarios.run_scenario", broken)
    assert _run(tmp_path, "-k", "calculus/sin") == 1
    printed = capsys.readouterr().out
    assert "FAILED scenarios: calculus/sin" in printed and "measured 4" in printed
    assert "reproduce: gradcheck run -k calculus/sin --seed 0" in printed
    assert "scenarios      2 failed" in printed and "verdict: FAILED" in printed


def test_unknown_keyword_is_an_error(tmp_path, capsys) -> None:
    assert _run(tmp_path, "-k", "no-such-scenario") == 2
    assert "no scenario id contains" in capsys.readouterr().err
    assert main(["list", "-k", "no-such-scenario"]) == 2


def test_bad_arguments_name_the_fix(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--report", str(tmp_path / "r.txt")])
    assert "--report must name an .html file" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["run", "--device", "cuda", "--report", str(tmp_path / "r.html")]) == 2
        assert "use --device cpu, or --device all" in capsys.readouterr().err


def test_device_all_without_cuda_reports_the_cuda_part_as_skipped(tmp_path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is present here; the skip path is for CPU-only machines")
    arguments = ["--device", "all", "--only", "scenarios", "parity", "-k", "calculus/exp"]
    assert main(["run", "--report", str(tmp_path / "r.html"), *arguments]) == 0
    assert "CUDA is not available" in capsys.readouterr().out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["skipped"][0]["section"] == "CUDA model checks and device parity"
    assert data["parity"] == [] and data["verdict"] == "passed"


def test_list_shows_id_oracles_topic_and_tags(capsys) -> None:
    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    assert "planted/relu_backward_2_at_kink" in printed
    line = next(x for x in printed.splitlines() if x.startswith("planted/relu_backward_2"))
    assert "finite_difference, sympy" in line and "planted-bug" in line
    assert "(gradcheck's own tables)" in line
    neuron = next(x for x in printed.splitlines() if x.startswith("neuron/relu_backward"))
    assert "sympy" in neuron and "seeds/000" in neuron and "notebook" in neuron


def test_module_entry_point_runs(tmp_path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "gradcheck",
            "run",
            "-k",
            "calculus/exp",
            "--only",
            "scenarios",
            "--report",
            str(tmp_path / "r.html"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "scenarios      1 passed" in completed.stdout and "claims: 3 passed" in completed.stdout


def test_a_run_whose_every_section_was_skipped_says_why(tmp_path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is present here; the skip path is for CPU-only machines")
    report = tmp_path / "r.html"
    assert main(["run", "--only", "parity", "--device", "all", "--report", str(report)]) == 2
    printed = capsys.readouterr().out
    assert "CUDA is not available" in printed and "verdict: EMPTY" in printed
    assert json.loads(report.with_suffix(".json").read_text())["verdict"] == "empty"
