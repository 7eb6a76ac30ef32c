"""Write reports atomically and read saved run documents back with clear errors."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from gradcheck.errors import InvalidArgument

SCHEMA = "gradcheck-report/1"
"""The ``schema`` field of every run document this version writes and reads."""


class NotARunDocument(InvalidArgument):
    """A JSON file that is not a gradcheck run document (a matrix, pytest-benchmark's data)."""


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename.

    A crash mid-write leaves the previous file (or none) in place, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's 0600 would hide the report
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def unusable_output(path: Path) -> str | None:
    """Why a report cannot be written to ``path`` (an empty name, a folder, a parent that is a
    file, a place where nothing can be written such as ``/proc``), or None when it can.

    Checked before a run starts, so a long run does not end in a crash at its last step. A
    missing parent folder is created (as :func:`write_atomically` would create it); the check
    writes and removes a temporary file beside ``path``.
    """
    if not str(path) or not Path(path).name or Path(path).name in (".", ".."):
        return "is an empty file name; name a file, such as reports/run.html"
    path = Path(path)
    if path.is_dir():
        return "is a folder; name a file inside it, such as " + str(path / "report.html")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"cannot be written: {ancestor} is a file, not a folder"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        return f"cannot write in {path.parent} ({error.strerror or error}); pick another place"
    return None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def json_path_beside(html_path: Path) -> Path:
    """Where the JSON of the report ``html_path`` goes: the same name with ``.json``."""
    return Path(html_path).with_suffix(".json")


def read_document(path: Path) -> dict[str, Any]:
    """Load a run document saved by ``gradcheck run`` or ``pytest --gradcheck-report``.

    Raises :class:`~gradcheck.errors.InvalidArgument` naming the file and the fix when it is
    missing, not JSON, or not a gradcheck run document.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidArgument(
            f"{path}: no such file; pass the .json written beside a report "
            "(gradcheck run --report reports/NAME.html writes reports/NAME.json)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise InvalidArgument(
            f"{path}: JSON nested too deeply to read; a run document is nested a few levels "
            "deep: write it again with `gradcheck run`"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidArgument(
            f"{path}: not valid JSON ({error}); pass the .json file written beside a report, "
            "not the .html"
        ) from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise NotARunDocument(
            f"{path}: not a gradcheck run document (schema {found!r}, expected {SCHEMA!r}); "
            "write one with `gradcheck run` or `pytest --gradcheck-report PATH`"
        )
    return data
