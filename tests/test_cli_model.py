"""``gradcheck model NAME``: progress bar, per-layer table, JSON, exit codes, clear errors; and
``--dtype bfloat16``: ResNet18 in bfloat16 against its own float64 self."""

from __future__ import annotations

import json
import os

import pytest
from test_resnet_scenario import torchvision_missing_reason

from gradcheck.cli import main
from gradcheck.model_results import ModuleCheckResult
from gradcheck.reference_results import ReferenceCheckResult


@pytest.fixture(autouse=True)
def _torchvision() -> None:
    reason = torchvision_missing_reason(os.environ)
    if reason is not None:
        pytest.skip(reason)


def test_model_checks_the_named_tensors_and_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / "model.json"
    arguments = ["model", "resnet18", "--parameters", "input", "fc.*", "--json", str(out)]
    assert main([*arguments, "--batch", "1", "--size", "32"]) == 0
    captured = capsys.readouterr()
    assert "fc.weight" in captured.out and "3 of 3 rows pass" in captured.out
    assert "[" + "#" * 30 + "] 3/3" in captured.err  # the progress bar reached the end
    result = ModuleCheckResult.from_dict(json.loads(out.read_text()))
    assert [row.name for row in result.rows] == ["input", "fc.weight", "fc.bias"]
    assert result.rows[0].shape == (1, 3, 32, 32)


def test_unknown_model_and_parameter_names_suggest_close_matches(tmp_path, capsys) -> None:
    assert main(["model", "resnet81", "--json", str(tmp_path / "x.json")]) == 2
    assert "Close matches: resnet18" in capsys.readouterr().err
    assert main(["model", "resnet18", "--parameters", "fc.wieght"]) == 2
    assert "Close matches: fc.weight" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_model_in_bfloat16_is_checked_against_its_float64_self(tmp_path, capsys) -> None:
    out = tmp_path / "bf16.json"
    arguments = ["model", "resnet18", "--dtype", "bfloat16", "--json", str(out)]
    code = main([*arguments, "--batch", "1", "--size", "32"])
    printed = capsys.readouterr().out
    result = ReferenceCheckResult.from_dict(json.loads(out.read_text()))
    assert code == {"passed": 0, "failed": 1}.get(result.status, 2)
    assert result.reference_check == "passed" and result.dtype == "bfloat16"
    rows = {row.name: row for row in result.rows}
    assert len(rows) == 64 and rows["input"].shape == (1, 3, 32, 32)
    assert [row.kind for row in result.rows][:2] == ["input", "parameter"]
    assert result.rows[-1].name == "output" and result.rows[-1].shape == (1, 1000)
    # the same eager model on both sides: bit for bit the reference's own bfloat16 error
    assert not result.failed_rows
    assert all(row.candidate_error == row.baseline_error for row in result.rows)
    assert "fc.weight" in printed and "--dtype bfloat16 --seed 0" in printed
