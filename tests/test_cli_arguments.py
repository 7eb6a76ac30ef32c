"""The ``gradcheck`` command's arguments: --version, output paths checked before anything runs,
a -k that selects nothing, --weights that are not a state dict, help texts, model reproduce."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest
import torch

import gradcheck
from gradcheck.cli import build_parser, main


def _never(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise AssertionError("the run started although its output path is unusable")


def test_version_prints_the_package_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"gradcheck {gradcheck.__version__}"


def _bad_paths(tmp_path):  # type: ignore[no-untyped-def]
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    folder = tmp_path / "folder.html"
    folder.mkdir()
    return {
        "unwritable": ("/proc/r.html", "cannot write"),
        "a folder": (str(folder), "is a folder"),
        "a file as parent": (str(blocker / "r.html"), "is a file, not a folder"),
    }


@pytest.mark.parametrize("case", ["unwritable", "a folder", "a file as parent"])
def test_run_checks_its_report_path_before_it_starts(tmp_path, monkeypatch, capsys, case) -> None:
    monkeypatch.setattr("gradcheck.runner.run_suite", _never)
    path, words = _bad_paths(tmp_path)[case]
    assert main(["run", "--only", "scenarios", "--report", path]) == 2
    error = capsys.readouterr().err
    assert "--report" in error and words in error and path in error


def test_run_refuses_an_empty_report_name(monkeypatch, capsys) -> None:
    monkeypatch.setattr("gradcheck.runner.run_suite", _never)
    assert main(["run", "--report", ""]) == 2
    error = capsys.readouterr().err
    assert "--report" in error and "empty" in error


def test_a_missing_folder_that_can_be_made_is_not_refused(tmp_path, monkeypatch) -> None:
    from gradcheck.report.files import unusable_output

    assert unusable_output(tmp_path / "new" / "deeper" / "r.html") is None


def test_merge_checks_its_output_before_merging(tmp_path, monkeypatch, capsys) -> None:
    from report_documents import run_document

    run = tmp_path / "run.json"
    run.write_text(json.dumps(run_document()))
    monkeypatch.setattr("gradcheck.report.merge.merge_documents", _never)
    assert main(["report", "merge", str(run), "-o", "/proc/m.html"]) == 2
    assert "-o" in capsys.readouterr().err


def test_model_checks_its_json_path_before_building(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("gradcheck.zoo.build_model", _never)
    assert main(["model", "resnet18", "--json", str(tmp_path)]) == 2
    assert "--json" in capsys.readouterr().err


def test_a_keyword_that_selects_nothing_is_refused_before_pytest(monkeypatch, capsys) -> None:
    monkeypatch.setattr("gradcheck.runner.run_suite", _never)
    code = main(["run", "--only", "scenarios", "properties", "-k", "no_such_thing_anywhere"])
    assert code == 2
    error = capsys.readouterr().err
    assert "selects nothing" in error and "no_such_thing_anywhere" in error


def test_weights_that_are_not_a_state_dict_get_a_clear_error(tmp_path, capsys) -> None:
    pytest.importorskip("torchvision")
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    for path in (text, tensor):
        assert main(["model", "resnet18", "--weights", str(path)]) == 2
        error = capsys.readouterr().err
        assert "state_dict" in error and str(path) in error and "Traceback" not in error


def _help_texts(parser: argparse.ArgumentParser):  # type: ignore[no-untyped-def]
    yield parser.description or ""
    for action in parser._actions:
        yield action.help or ""
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                yield choice.help or ""
            for sub in action.choices.values():
                yield from _help_texts(sub)


def test_help_texts_hold_no_rest_markup() -> None:
    marked = [text for text in _help_texts(build_parser()) if "``" in text or ":func:" in text]
    assert marked == []


def test_model_prints_a_cli_reproduce_line_and_parameters_leave_out_the_input(
    tmp_path, monkeypatch, capsys
) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh(), torch.nn.Linear(2, 1))
    images = torch.randn(2, 3, dtype=torch.float64)
    monkeypatch.setattr("gradcheck.zoo.build_model", lambda *a, **k: (model, images))
    out = tmp_path / "m.json"
    code = main(["model", "tiny", "--parameters", "0.*", "--json", str(out)])
    printed = capsys.readouterr().out
    rows = [row["name"] for row in json.loads(out.read_text())["rows"]]
    assert code == 0 and rows == ["0.weight", "0.bias"]
    assert "reproduce: gradcheck model tiny" in printed and "--parameters '0.*'" in printed
    main(["model", "tiny", "--parameters", "0.bias", "input", "--json", str(out)])
    assert [row["name"] for row in json.loads(out.read_text())["rows"]] == ["input", "0.bias"]


def test_matrix_json_is_strict_json(tmp_path) -> None:
    from report_documents import run_document

    document = run_document()  # its claims without an oracle's error merge to a NaN error
    run = tmp_path / "run.json"
    run.write_text(json.dumps(document))
    assert main(["report", "merge", str(run), "-o", str(tmp_path / "m.html")]) == 0

    def refuse(constant: str) -> None:
        raise ValueError(f"bare {constant} in matrix.json")

    matrix = json.loads((tmp_path / "m.json").read_text(), parse_constant=refuse)
    assert any(cell and cell["error"] == "nan" for row in matrix["rows"] for cell in row["cells"])


@pytest.mark.skipif(os.name != "posix", reason="subprocess entry point")
def test_version_through_the_module_entry_point() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gradcheck", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and gradcheck.__version__ in done.stdout
