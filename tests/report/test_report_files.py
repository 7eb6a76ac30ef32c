"""Reports are written atomically: a crash mid-write leaves the previous report intact."""

from __future__ import annotations

import os

import pytest

from gradcheck.report import files
from gradcheck.report.files import write_atomically


def test_a_crash_mid_write_keeps_the_old_report_and_leaves_no_temporary(tmp_path, monkeypatch):
    report = tmp_path / "report.html"
    write_atomically(report, "<p>old report</p>")
    real_fdopen = os.fdopen

    class CrashingHandle:
        def __init__(self, handle):  # type: ignore[no-untyped-def]
            self.handle = handle

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc):  # type: ignore[no-untyped-def]
            self.handle.close()

        def write(self, text: str) -> None:
            self.handle.write(text[: len(text) // 2])  # half the report reaches the disk...
            raise OSError("disk full")  # ...then the write dies

    monkeypatch.setattr(files.os, "fdopen", lambda *a, **k: CrashingHandle(real_fdopen(*a, **k)))
    with pytest.raises(OSError, match="disk full"):
        write_atomically(report, "<p>new report that is much longer</p>")
    assert report.read_text() == "<p>old report</p>"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_the_folder_is_created_and_the_text_is_complete(tmp_path) -> None:
    target = tmp_path / "deep" / "reports" / "r.json"
    write_atomically(target, "x" * 100_000)
    assert target.read_text() == "x" * 100_000
