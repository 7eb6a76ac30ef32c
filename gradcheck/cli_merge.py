"""``gradcheck report merge``: several runs' JSON documents into one HTML matrix and its JSON.

Every document is read and its shape checked (:mod:`gradcheck.report.shape`) before anything is
merged, and the output is checked to be writable first; the matrix's JSON is strict (no bare
NaN). No torch is imported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def unusable_outputs(path: Path, option: str) -> str | None:
    """Why the report ``path`` given as ``option`` (or the JSON beside it) cannot be written,
    as a sentence naming the option, or None."""
    from gradcheck.report.files import json_path_beside, unusable_output

    path = Path(path)
    problem = unusable_output(path)
    if problem is not None:
        return f"{option} {str(path)!r} {problem}"
    beside = json_path_beside(path)
    problem = None if beside == path else unusable_output(beside)
    return None if problem is None else f"{option} {path}: its JSON {beside} {problem}"


def merge_reports(arguments: argparse.Namespace) -> int:
    """``gradcheck report merge``: several run documents into one HTML matrix (and JSON)."""
    from gradcheck.errors import InvalidArgument
    from gradcheck.jsonsafe import json_safe
    from gradcheck.report.files import (
        NotARunDocument,
        json_path_beside,
        read_document,
        write_atomically,
    )
    from gradcheck.report.merge import merge_documents
    from gradcheck.report.render import render_matrix
    from gradcheck.report.shape import check_run_document

    unusable = unusable_outputs(arguments.output, "-o")
    if unusable is not None:
        print(f"gradcheck report merge: {unusable}", file=sys.stderr)
        return 2

    files: list[Path] = []
    for path in arguments.files:
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(path.glob("*.json"))
        if not found:
            print(
                f"gradcheck report merge: the folder {path} holds no .json run documents; pass "
                "the folder the runs were written to (tox -m versions writes reports/versions)",
                file=sys.stderr,
            )
            return 2
        files += found
    documents, names = [], []
    for path in files:
        try:
            document = read_document(path)
            check_run_document(document, path)
            documents.append(document)
            names.append(str(path))
        except NotARunDocument as error:  # a glob also matches matrix.json, benchmarks.json
            print(f"gradcheck report merge: skipping {error}", file=sys.stderr)
        except InvalidArgument as error:
            print(f"gradcheck report merge: {error}", file=sys.stderr)
            return 2
    if not documents:
        print("gradcheck report merge: none of the files is a run document", file=sys.stderr)
        return 2
    outputs = {arguments.output.resolve(), json_path_beside(arguments.output).resolve()}
    if outputs & {Path(name).resolve() for name in names}:
        print(
            f"gradcheck report merge: -o {arguments.output} would overwrite one of the runs "
            "being merged; pick another output name (for example reports/matrix.html)",
            file=sys.stderr,
        )
        return 2
    matrix = merge_documents(documents, names)
    if arguments.output.suffix != ".json":
        write_atomically(arguments.output, render_matrix(matrix))
    strict = json.dumps(json_safe(matrix), indent=1, allow_nan=False)  # no bare NaN
    write_atomically(json_path_beside(arguments.output), strict)
    summary = matrix["summary"]
    print(
        f"{len(documents)} runs, {summary['rows']} checks: {summary['differ']} with differing "
        f"verdicts, {summary['partial']} missing in some run, {summary['moved']} moved; "
        f"matrix: {arguments.output}"
    )
    for row in matrix["rows"][: summary["differ"]]:
        verdicts = " | ".join(cell["verdict"] if cell else "not run" for cell in row["cells"])
        print(f"  differs: {row['section']} {row['key']}: {verdicts}")
    return 0
