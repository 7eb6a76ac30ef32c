"""The ``gradcheck run`` command: table, JSON results, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

from gradcheck.cli import main


def test_run_prints_table_and_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / "results.json"
    assert main(["run", "-k", "calculus/sin", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "calculus/sin " in printed and "calculus/sin_large_argument" in printed
    assert "6 of 6 checks as expected" in printed
    data = json.loads(out.read_text())
    assert {c["result"]["oracle"] for c in data["checks"]} == {
        "finite_difference",
        "sympy",
        "forward",
    }
    assert all(c["matches"] for c in data["checks"])


def test_planted_bugs_show_as_caught(tmp_path, capsys) -> None:
    assert main(["run", "-k", "planted/relu", "--json", str(tmp_path / "r.json")]) == 0
    assert "bug caught" in capsys.readouterr().out


def test_unexpected_outcome_exits_non_zero(tmp_path, monkeypatch, capsys) -> None:
    import gradcheck.scenarios as scenarios

    monkeypatch.setattr(scenarios, "outcome_matches", lambda scenario, result: False)
    assert main(["run", "-k", "calculus/sin", "--json", str(tmp_path / "r.json")]) == 1
    assert "unexpected" in capsys.readouterr().out


def test_unknown_keyword_is_an_error(tmp_path, capsys) -> None:
    assert main(["run", "-k", "no-such-scenario", "--json", str(tmp_path / "r.json")]) == 2
    assert "no scenario id contains" in capsys.readouterr().err


def test_console_script_is_installed(tmp_path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "gradcheck.cli",
            "run",
            "-k",
            "calculus/exp",
            "--json",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "3 of 3 checks as expected" in completed.stdout
