"""How a long check shows its progress: the caller's callback, or a bar on stderr.

``check_function(progress=...)`` takes ``None`` (the default: a bar on stderr once the check has
run :data:`SHOW_AFTER_S` seconds, only when stderr is a terminal, so a test run or a log file
gets nothing), ``False`` (nothing), ``True`` (a bar on stderr from the start, terminal or not)
or a callable taking ``(done, total)`` probes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from gradcheck.errors import InvalidArgument

Progress = Callable[[int, int], None]
"""Called with (probes finished, probes in all) as a check goes."""

SHOW_AFTER_S = 2.0
"""The automatic bar appears once a check has run this long."""

BAR_WIDTH = 30


def progress_callback(progress: object, label: str) -> Progress | None:
    """The callback for ``progress`` (see the module docstring); None shows nothing."""
    if progress is False:
        return None
    if progress is None or progress is True:
        stream = sys.stderr
        if progress is None and not stream.isatty():
            return None
        return StderrBar(label, stream, 0.0 if progress else SHOW_AFTER_S)
    if callable(progress):
        return progress  # type: ignore[return-value]
    raise InvalidArgument(
        f"Got progress={progress!r}, but progress must be None (a bar on a terminal for long "
        "checks), True, False or a callable taking (done, total)."
    )


class StderrBar:
    """A one-line bar, redrawn in place, shown once ``after_s`` seconds have passed."""

    def __init__(self, label: str, stream: TextIO, after_s: float) -> None:
        self.label, self.stream, self.after_s = label, stream, after_s
        self.started = time.perf_counter()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        """Draw the bar at ``done`` of ``total``."""
        elapsed = time.perf_counter() - self.started
        if elapsed < self.after_s and not self.shown:
            return
        self.shown = True
        filled = BAR_WIDTH * done // max(total, 1)
        line = (
            f"\r{self.label[:40]} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
            f"{done}/{total} probes {elapsed:6.1f}s"
        )
        end = "\n" if done >= total else ""
        print(line, end=end, file=self.stream, flush=True)
