"""``gradcheck report merge`` on malformed run documents: the file and the field are named, and
no raw KeyError, AttributeError, TypeError, RecursionError or UnicodeEncodeError escapes."""

from __future__ import annotations

import json
import random

import pytest
from report_documents import run_document

from gradcheck.cli import main


def _broken(kind: str) -> str:
    """A run document's text, broken one way."""
    document = run_document()
    if kind == "no scenarios":
        del document["scenarios"]
    elif kind == "scenarios is text":
        document["scenarios"] = "abc"
    elif kind == "claim without statement":
        del document["scenarios"][0]["claims"][0]["statement"]
    elif kind == "checks is a number":
        document["scenarios"][0]["claims"][0]["checks"] = 3
    elif kind == "model rows hold numbers":
        document["models"][0]["rows"] = [1, 2]
    elif kind == "test without nodeid":
        document["tests"] = [{"outcome": "passed"}]
    elif kind == "benchmark stats is a list":
        document["benchmarks"] = [{"name": "b", "stats": [1]}]
    elif kind == "environment is a list":
        document["environment"] = ["torch"]
    elif kind == "a lone surrogate":
        document["scenarios"][0]["id"] = "calculus/\ud800"
    elif kind == "nested too deeply":
        text = json.dumps(document)
        return text[:-1] + ', "extra": ' + "[" * 100_000 + "]" * 100_000 + "}"
    elif kind == "deep environment value":
        text = json.dumps(document)
        return text[:-1] + ', "environment": {"torch": ' + "[" * 100 + "]" * 100 + "}}"
    return json.dumps(document)


KINDS = [
    "no scenarios",
    "scenarios is text",
    "claim without statement",
    "checks is a number",
    "model rows hold numbers",
    "test without nodeid",
    "benchmark stats is a list",
    "environment is a list",
    "a lone surrogate",
    "nested too deeply",
    "deep environment value",
]


@pytest.mark.parametrize("kind", KINDS)
def test_a_malformed_document_names_the_file_and_the_field(tmp_path, capsys, kind) -> None:
    path = tmp_path / "broken.json"
    path.write_text(_broken(kind))
    assert main(["report", "merge", str(path), "-o", str(tmp_path / "m.html")]) == 2
    error = capsys.readouterr().err
    assert str(path) in error and "Traceback" not in error, error
    words = {
        "no scenarios": "scenarios",
        "scenarios is text": "scenarios",
        "claim without statement": "scenarios[0].claims[0].statement",
        "checks is a number": "scenarios[0].claims[0].checks",
        "model rows hold numbers": "models[0].rows[0]",
        "test without nodeid": "tests[0].nodeid",
        "benchmark stats is a list": "benchmarks[0].stats",
        "environment is a list": "environment",
        "a lone surrogate": "scenarios[0].id",
        "nested too deeply": "nested",
        "deep environment value": "environment.torch",
    }[kind]
    assert words in error, error


def test_random_damage_never_raises(tmp_path, capsys) -> None:
    """Delete or retype random fields of a valid document: merge says what is wrong (exit 2) or
    merges (exit 0), never a traceback."""
    rng = random.Random(0)
    base = run_document()

    def places(value, path=()):  # type: ignore[no-untyped-def]
        if isinstance(value, dict):
            for key, item in value.items():
                yield (*path, key)
                yield from places(item, (*path, key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                yield (*path, i)
                yield from places(item, (*path, i))

    spots = list(places(base))
    for trial in range(40):
        document = json.loads(json.dumps(base))
        where = rng.choice(spots)
        parent = document
        for step in where[:-1]:
            parent = parent[step]
        parent[where[-1]] = rng.choice([None, 3, "x", [], {}, [1], {"a": 1}, 1.5, True])
        path = tmp_path / f"damaged-{trial}.json"
        path.write_text(json.dumps(document))
        code = main(["report", "merge", str(path), "-o", str(tmp_path / f"m{trial}.html")])
        assert code in (0, 2), (where, code)
        if code == 2:
            assert str(path) in capsys.readouterr().err
