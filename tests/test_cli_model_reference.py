"""``gradcheck model NAME --dtype bfloat16`` (float16, float32) and ``--compile [BACKEND]``: the
model against its own float64 (or eager) self through check_against_reference and
check_compiled, on a tiny model standing in for the zoo's: the table, the reproduce line that
spells --compile, the default JSON path per dtype and backend, and the exit status."""

from __future__ import annotations

import json

import pytest
import torch
from report_documents import PlantedMLP

from gradcheck.cli import build_parser, main
from gradcheck.cli_model import model_command
from gradcheck.reference_results import ReferenceCheckResult


def _tiny(monkeypatch, model=None, images=None) -> None:  # type: ignore[no-untyped-def]
    model = model or torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)
    )
    images = torch.randn(2, 3, dtype=torch.float64) if images is None else images
    monkeypatch.setattr("gradcheck.zoo.build_model", lambda *a, **k: (model, images))


def test_a_low_dtype_checks_the_model_against_its_float64_self(
    tmp_path, monkeypatch, capsys
) -> None:
    _tiny(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert main(["model", "tiny", "--dtype", "bfloat16"]) == 0
    printed = capsys.readouterr().out
    saved = tmp_path / "reports" / "model-tiny-eval-bfloat16.json"
    result = ReferenceCheckResult.from_dict(json.loads(saved.read_text()))
    assert result.dtype == "bfloat16" and result.compiled == "" and result.passed
    assert [row.name for row in result.rows] == [
        "input",
        "0.weight",
        "0.bias",
        "2.weight",
        "2.bias",
        "output",
    ]
    assert result.reference_check == "passed"  # the float64 gradient was checked first
    assert printed.startswith("status ") and "impl err" in printed  # the table
    assert "reproduce: gradcheck model tiny --device cpu --mode eval" in printed
    assert "--dtype bfloat16 --seed 0" in printed and "--directions" not in printed


def test_compile_checks_the_compiled_model_against_eager(tmp_path, monkeypatch, capsys) -> None:
    _tiny(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert main(["model", "tiny", "--dtype", "float16", "--compile", "aot_eager"]) == 0
    printed = capsys.readouterr().out
    saved = tmp_path / "reports" / "model-tiny-eval-float16-compiled-aot_eager.json"
    result = ReferenceCheckResult.from_dict(json.loads(saved.read_text()))
    assert result.compiled == "aot_eager" and result.dtype == "float16" and result.passed
    assert "--dtype float16 --compile aot_eager --seed 0" in printed
    assert "compilation included" in printed


def test_a_wrong_float64_gradient_fails_the_check_with_exit_status_1(
    tmp_path, monkeypatch, capsys
) -> None:
    # PlantedMLP's second layer has a weight gradient 1.001 times too large: the reference's
    # own float64 gradient fails check_module, so the check fails before any row is judged
    inputs = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    _tiny(monkeypatch, PlantedMLP(), inputs)
    out = tmp_path / "planted.json"
    assert main(["model", "planted", "--dtype", "float32", "--json", str(out)]) == 1
    assert "Wrong reference" in capsys.readouterr().out
    result = ReferenceCheckResult.from_dict(json.loads(out.read_text()))
    assert result.status == "failed" and result.reference_check == "failed"


def test_bare_compile_means_inductor_and_parameters_are_refused(
    tmp_path, monkeypatch, capsys
) -> None:
    arguments = build_parser().parse_args(["model", "resnet18", "--compile"])
    assert arguments.compile == "inductor" and arguments.dtype == "float64"
    assert "--dtype float64 --compile inductor --seed 0" in model_command(arguments)
    plain = build_parser().parse_args(["model", "resnet18"])
    assert plain.compile is None and "--compile" not in model_command(plain)
    assert "--directions 2" in model_command(plain)
    _tiny(monkeypatch)
    out = tmp_path / "x.json"
    code = main(["model", "tiny", "--dtype", "bfloat16", "--parameters", "0.*", "--json", str(out)])
    assert code == 2 and "--parameters" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["model", "resnet18", "--dtype", "int8"])
    assert main(["model", "tiny", "--compile", "no_such_backend", "--json", str(out)]) == 2
    assert "no_such_backend" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize(
    ("dtype", "section", "heading"),
    [
        ("bfloat16", "references", "Low precision, compiled and distributed"),
        ("float64", "models", "Model"),
    ],
)
def test_report_writes_the_check_as_an_html_report_with_its_table_and_chart(
    tmp_path, monkeypatch, capsys, dtype, section, heading
) -> None:
    _tiny(monkeypatch)
    report = tmp_path / "model.html"
    assert main(["model", "tiny", "--dtype", dtype, "--report", str(report)]) == 0
    printed = capsys.readouterr().out
    html = report.read_text()
    document = json.loads((tmp_path / "model.json").read_text())
    assert f"report: {report}" in printed
    assert len(document[section]) == 1 and document["verdict"] == "passed"
    assert document[section][0]["origin"] == "gradcheck run"
    assert heading in html and "0.weight" in html and "<svg" in html
    other = "models" if section == "references" else "references"
    assert document[other] == []


def test_an_unwritable_report_path_is_refused_before_the_check(tmp_path, monkeypatch, capsys):
    _tiny(monkeypatch)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["model", "tiny", "--dtype", "bfloat16", "--report", str(blocker / "r.html")]) == 2
    assert "--report" in capsys.readouterr().err
