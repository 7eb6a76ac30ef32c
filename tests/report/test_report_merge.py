"""``gradcheck report merge``: runs become columns, checks become rows, differences first."""

from __future__ import annotations

import json

from html_parsing import Page
from report_documents import run_document

from gradcheck.cli import main
from gradcheck.report.merge import merge_documents


def _saved(tmp_path, name: str, document: dict):  # type: ignore[no-untyped-def]
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


def test_merge_puts_differing_rows_first() -> None:
    old, new = run_document(torch_version="2.13.0"), run_document(flip=True)
    new["models"] = []  # this run did not check the model
    matrix = merge_documents([old, new], ["torch-2.13.json", "torch-2.14.json"])
    assert [run["label"] for run in matrix["runs"]] == [
        "torch 2.13.0 · cpu · CPython 3.11.7",
        "torch 2.14.1 · cpu · CPython 3.11.7",
    ]
    first = matrix["rows"][0]
    assert first["differs"] and first["key"].startswith("calculus/sin :: ")
    assert [cell["verdict"] for cell in first["cells"]] == ["passed", "failed"]
    assert matrix["summary"]["differ"] == 1
    partial = [row for row in matrix["rows"] if row["partial"]]
    assert len(partial) == 5 and all(row["section"] == "models" for row in partial)
    assert partial[0]["cells"][1] is None
    moved = [row for row in matrix["rows"] if row["moved"]]
    assert [row["key"] for row in moved] == ["benchmarks/test_b.py::test_backward"]  # 2 -> 5 ms
    torch_row = next(row for row in matrix["environment"] if row["fact"] == "torch")
    assert torch_row["differs"] and torch_row["values"] == ["2.13.0", "2.14.1"]


def test_same_file_names_are_told_apart_and_repeated_statements_stay_rows() -> None:
    document = run_document()
    claims = document["scenarios"][0]["claims"]
    claims.append(dict(claims[0]))  # the same statement made twice in one scenario
    matrix = merge_documents([document, document], ["v1/report.json", "v2/report.json"])
    assert [run["file"] for run in matrix["runs"]] == ["v1/report.json", "v2/report.json"]
    keys = [row["key"] for row in matrix["rows"] if row["section"] == "scenarios"]
    assert len(keys) == len(set(keys)) == sum(len(s["claims"]) for s in document["scenarios"])
    assert any(key.endswith(" (#2)") for key in keys)
    devices = next(row for row in matrix["environment"] if row["fact"] == "devices")
    assert devices["values"] == ["cpu", "cpu"]


def test_merge_command_writes_an_html_matrix(tmp_path, capsys) -> None:
    first = _saved(tmp_path, "a.json", run_document(torch_version="2.13.0"))
    second = _saved(tmp_path, "b.json", run_document(flip=True))
    output = tmp_path / "matrix.html"
    assert main(["report", "merge", str(first), str(second), "-o", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "1 with differing verdicts" in printed and "differs: scenarios calculus/sin" in printed
    page = Page(output.read_text())
    assert page.ids.index("differences") < page.ids.index("all")
    rows = page.rows_after("differences", before="environment")
    assert "torch 2.13.0" in rows[0][1] and "a.json" in rows[0][1]  # the header names the runs
    assert (
        rows[1][0] == "failed" and "calculus/sin" in rows[1][1] and "verdicts differ" in rows[1][1]
    )
    assert not [tag for tag, _ in page.tags if tag == "script"]
    assert "test_backward[<script>alert(1)</script>]" not in page.text  # rows use full names
    assert json.loads(output.with_suffix(".json").read_text())["summary"]["differ"] == 1


def test_merge_rejects_files_that_are_not_run_documents(tmp_path, capsys) -> None:
    html = tmp_path / "report.html"
    html.write_text("<html></html>")
    other = _saved(tmp_path, "other.json", {"schema": "something-else"})
    for path, expected in (
        (html, "not valid JSON"),
        (other, "none of the files is a run document"),
        (tmp_path / "missing.json", "no such file"),
    ):
        assert main(["report", "merge", str(path), "-o", str(tmp_path / "m.html")]) == 2
        assert expected in capsys.readouterr().err
    assert not (tmp_path / "m.html").exists()


def test_the_readme_glob_can_be_merged_again(tmp_path, capsys) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    _saved(reports, "torch-2.13.json", run_document(torch_version="2.13.0"))
    _saved(reports, "torch-2.14.json", run_document())
    _saved(reports, "benchmarks.json", {"machine_info": {}, "benchmarks": []})  # --bench's file
    for _ in range(2):  # the second time, the glob also matches the first matrix.json
        files = sorted(str(p) for p in reports.glob("*.json"))
        assert main(["report", "merge", *files, "-o", str(reports / "matrix.html")]) == 0
        captured = capsys.readouterr()
        assert "2 runs" in captured.out and "skipping" in captured.err
    first = str(reports / "torch-2.13.json")
    assert main(["report", "merge", first, "-o", str(reports / "torch-2.13.html")]) == 2
    assert "would overwrite one of the runs" in capsys.readouterr().err


def test_a_folder_merges_the_runs_inside_it(tmp_path, capsys) -> None:
    """``tox -e matrix`` passes reports/versions: its *.json are the runs, in name order."""
    versions = tmp_path / "versions"
    versions.mkdir()
    _saved(versions, "torch215.json", run_document(flip=True))
    _saved(versions, "torch211.json", run_document(torch_version="2.11.0"))
    (versions / "torch211.html").write_text("<html></html>")  # the HTML beside it is not read
    output = tmp_path / "matrix.html"
    assert main(["report", "merge", str(versions), "-o", str(output)]) == 0
    assert "2 runs" in capsys.readouterr().out
    runs = json.loads(output.with_suffix(".json").read_text())["runs"]
    assert [run["file"].rsplit("/", 1)[-1] for run in runs] == ["torch211.json", "torch215.json"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", "merge", str(empty), "-o", str(output)]) == 2
    assert "holds no .json run documents" in capsys.readouterr().err
