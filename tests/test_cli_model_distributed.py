"""``gradcheck model NAME --ddp RANKS``: a torchvision model's training step on spawned gloo
ranks against its whole batch in one process in float64 (check_distributed), with its table,
JSON, reproduce line, HTML report and exit status; and the options --ddp cannot go with."""

from __future__ import annotations

import json

import pytest
from html_parsing import Page

from gradcheck.cli import main
from gradcheck.distributed_results import DistributedCheckResult


def test_ddp_checks_resnet18_on_two_ranks_with_its_report(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    arguments = ["model", "resnet18", "--size", "32", "--batch", "4", "--dtype", "float32"]
    arguments += ["--ddp", "2", "--accumulation-steps", "2", "--report", "out/report.html"]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    saved = tmp_path / "reports" / "model-resnet18-eval-float32-ddp2x2.json"
    result = DistributedCheckResult.from_dict(json.loads(saved.read_text()))
    assert result.passed and result.world_size == 2 and result.accumulation_steps == 2
    assert len(result.rows) == 62 and result.dtype == "float32"
    assert result.reference_check == "skipped"  # 11.7 million parameters: not by default
    assert "--ddp 2 --accumulation-steps 2 --comm-hook none --seed 0" in printed
    assert "ranks started in" in printed
    page = Page((tmp_path / "out" / "report.html").read_text())
    assert "Low precision, compiled and distributed (1)" in page.text
    assert "2 gloo ranks, DDP, 2 micro-batch(es) each" in page.text
    assert "every rank finished with rank 0's gradients, bit for bit" in page.text


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--ddp", "0"], "--ddp and --accumulation-steps must be at least 1"),
        (["--ddp", "2", "--compile"], "leave --compile and --parameters out"),
        (["--ddp", "2", "--parameters", "fc.*"], "leave --compile and --parameters out"),
        (["--ddp", "2", "--dtype", "bfloat16"], "pass --comm-hook fp16 or bf16"),
    ],
)
def test_options_ddp_cannot_go_with_are_refused(options, fragment, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["model", "resnet18", *options]) == 2
    assert fragment in capsys.readouterr().err
