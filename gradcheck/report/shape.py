"""The shape of a run document that ``gradcheck report merge`` reads, checked before merging.

A run document is JSON anyone can edit or truncate. :func:`check_run_document` walks the fields
the merge and the matrix page read and refuses the first one that is missing or of the wrong
type, naming the file and the field (``scenarios[0].claims[2].statement``), so a damaged file
never surfaces as a KeyError, a TypeError, a RecursionError or a UnicodeEncodeError.
Standard library only, like the rest of :mod:`gradcheck.report`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradcheck.errors import InvalidArgument

MAX_NESTING = 32
"""A run document nests a few levels deep; deeper values are refused (their text would
overflow Python's recursion)."""

TEXT, FLAG, NUMBER = "a string", "true or false", "a number"
LIST, MAPPING = "a list", "an object"

_KINDS: dict[str, Any] = {
    TEXT: str,
    FLAG: bool,
    NUMBER: (int, float, str, type(None)),  # a number, "nan"/"inf" (jsonsafe), or null
    LIST: list,
    MAPPING: dict,
}

# field -> (kind, required); an entry of a list section is an object with these fields.
_ENTRIES: dict[str, dict[str, tuple[str, bool]]] = {
    "scenarios": {"id": (TEXT, True), "status": (TEXT, True), "claims": (LIST, False)},
    "claims": {"statement": (TEXT, True), "passed": (FLAG, True), "checks": (LIST, False)},
    "checks": {"oracle": (TEXT, False), "max_rel_error": (NUMBER, False)},
    "models": {
        "module": (TEXT, True),
        "mode": (TEXT, True),
        "dtype": (TEXT, True),
        "device": (TEXT, True),
        "rows": (LIST, False),
    },
    "model rows": {"name": (TEXT, True), "status": (TEXT, True)},
    "parity": {"module": (TEXT, True), "rows": (LIST, False), "skipped": (LIST, False)},
    "parity rows": {"name": (TEXT, True), "device": (TEXT, True), "passed": (FLAG, True)},
    "references": {
        "status": (TEXT, True),
        "implementation": (TEXT, True),
        "dtype": (TEXT, True),
        "device": (TEXT, True),
        "rows": (LIST, False),
    },
    "reference rows": {"name": (TEXT, True), "kind": (TEXT, True), "status": (TEXT, True)},
    "tests": {"nodeid": (TEXT, True), "outcome": (TEXT, True)},
    "benchmarks": {"name": (TEXT, True), "stats": (MAPPING, False)},
}
_SECTIONS = ("scenarios", "models", "parity", "references", "tests", "benchmarks")
_OPTIONAL = ("references",)
"""Sections a document written before they existed lacks (read as empty)."""
_NESTED = {
    ("scenarios", "claims"): "claims",
    ("claims", "checks"): "checks",
    ("models", "rows"): "model rows",
    ("parity", "rows"): "parity rows",
    ("references", "rows"): "reference rows",
}


class _Bad(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(field, problem)
        self.field, self.problem = field, problem


def check_run_document(document: dict[str, Any], path: Path | str) -> None:
    """Refuse ``document`` (read from ``path``) when a field the merge reads is missing or of
    the wrong type, a value nests deeper than :data:`MAX_NESTING`, or a string cannot be
    written as UTF-8; the :class:`~gradcheck.errors.InvalidArgument` names the file and the
    field."""
    try:
        _check_text_and_depth(document)
        for section in _SECTIONS:
            _check_list(document, section, section, section)
        _check_kind(document, "environment", MAPPING, False, "environment")
        environment = document.get("environment") or {}
        _check_kind(environment, "devices", LIST, False, "environment.devices")
        if "origin" in document:
            _check_kind(document, "origin", TEXT, True, "origin")
    except _Bad as bad:
        raise InvalidArgument(
            f"{path}: {bad.field} {bad.problem}; this is not a complete gradcheck run document. "
            "Write it again with `gradcheck run` (or pytest --gradcheck-report), or leave the "
            "file out of the merge."
        ) from None


def _check_list(holder: dict[str, Any], key: str, kind: str, field: str) -> None:
    if key not in holder:
        if kind in _SECTIONS and kind not in _OPTIONAL:
            raise _Bad(field, "is missing (a list, [] when the section did not run)")
        return
    entries = holder[key]
    if not isinstance(entries, list):
        raise _Bad(field, f"is {_kind_of(entries)}, not a list")
    for i, entry in enumerate(entries):
        where = f"{field}[{i}]"
        if not isinstance(entry, dict):
            raise _Bad(where, f"is {_kind_of(entry)}, not an object")
        for name, (expected, required) in _ENTRIES[kind].items():
            if kind == "benchmarks" and name == "name" and "fullname" in entry:
                required = False
            if kind in ("models", "parity") and name == "module" and "label" in entry:
                required = False
            _check_kind(entry, name, expected, required, f"{where}.{name}")
            nested = _NESTED.get((kind, name))
            if nested is not None:
                _check_list(entry, name, nested, f"{where}.{name}")
        if kind == "parity":
            for j, pair in enumerate(entry.get("skipped") or ()):
                if not isinstance(pair, list) or len(pair) != 2:
                    raise _Bad(f"{where}.skipped[{j}]", "is not a [device, reason] pair")


def _check_kind(holder: Any, key: str, expected: str, required: bool, field: str) -> None:
    if not isinstance(holder, dict):
        raise _Bad(field.rsplit(".", 1)[0], f"is {_kind_of(holder)}, not an object")
    if key not in holder:
        if required:
            raise _Bad(field, f"is missing ({expected})")
        return
    value = holder[key]
    types = _KINDS[expected]
    wrong = not isinstance(value, types) or (expected == NUMBER and isinstance(value, bool))
    if expected in (TEXT, NUMBER) and isinstance(value, bool):
        wrong = True
    if wrong:
        raise _Bad(field, f"is {_kind_of(value)}, not {expected}")


def _check_text_and_depth(document: Any) -> None:
    """Every value nests at most :data:`MAX_NESTING` deep and every string is valid UTF-8
    (JSON's escapes admit lone surrogates such as \\ud800, which no file can hold)."""
    stack: list[tuple[Any, str, int]] = [(document, "", 0)]
    while stack:
        value, field, depth = stack.pop()
        if depth > MAX_NESTING:
            raise _Bad(field or "the document", f"is nested more than {MAX_NESTING} levels deep")
        if isinstance(value, str):
            _check_utf8(value, field)
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_utf8(key, f"{field}.{key}" if field else key)
                stack.append((item, f"{field}.{key}" if field else key, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{field}[{i}]", depth + 1) for i, item in enumerate(value))


def _check_utf8(text: str, field: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise _Bad(
            field, f"holds a character that is not valid UTF-8 ({text[error.start]!a})"
        ) from None


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)
