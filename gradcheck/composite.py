"""One result for a check of several derivatives: ``order=2`` (the gradient and the gradient
of the gradient) or ``mode="both"`` (reverse and forward mode).

Each derivative is its own :class:`~gradcheck.CheckResult`, kept in ``parts`` and named after
what it checks, as JAX's check_grads names them: ``VJP`` (reverse mode), ``JVP`` (forward mode),
``VJP of VJP`` (double backward: the derivative of autograd's gradient), ``JVP of VJP``
(forward mode through the gradient). The whole fails when a part fails, is inconclusive when
no part failed but one could not be decided, and passes only when every part passed.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable, Sequence

from gradcheck import messages
from gradcheck.results import CheckResult, Note
from gradcheck.status import FAILED, INCONCLUSIVE, PASSED, SKIPPED


def composite_status(parts: Sequence[CheckResult]) -> str:
    """Failed if any part failed, else inconclusive if any part was, else skipped if any part
    had nothing to check, else passed."""
    for status in (FAILED, INCONCLUSIVE, SKIPPED):
        if any(part.status == status for part in parts):
            return status
    return PASSED


def combined(
    titled: Sequence[tuple[str, CheckResult]], label: str, reproduce: str, started: float
) -> CheckResult:
    """The result of every part together (each with the title of the derivative it checks),
    with each part's message below a summary line; each part is named ``label [title]``."""
    titles = [title for title, _ in titled]
    parts = [dataclasses.replace(part, name=f"{label} [{title}]") for title, part in titled]
    status = composite_status(parts)
    first = parts[0]
    failing = [part for part in parts if part.status == FAILED]
    worst_part = failing[0] if failing else max(parts, key=lambda part: part.max_rel_error)
    summary = ", ".join(f"{title} {part.status}" for title, part in zip(titles, parts))
    headline = {
        PASSED: "Gradients match",
        FAILED: "Gradient mismatch",
        INCONCLUSIVE: "Inconclusive",
        SKIPPED: "Nothing to check",
    }[status]
    lines = [
        f"{headline}: {messages.subject('check_function', label, f'{first.dtype}, {first.device}')}"
        f", {len(parts)} derivatives: {summary}"
    ]
    shown = failing or [part for part in parts if part.status != PASSED] or list(parts)
    for part in shown:
        body = [line for line in part.message.splitlines() if "reproduce:" not in line]
        lines += ["  " + line for line in body]
    lines.append(messages.reproduce_line(reproduce))

    def prefixed(notes: Sequence[Note], title: str) -> tuple[Note, ...]:
        return tuple(Note(f"{title}: {note.where}", note.reason) for note in notes)

    return CheckResult(
        passed=status == PASSED,
        status=status,
        name=label,
        oracle=first.oracle,
        dtype=first.dtype,
        device=first.device,
        mode=first.mode,
        checked=sum(part.checked for part in parts),
        failed=sum(part.failed for part in parts),
        max_abs_error=_largest(part.max_abs_error for part in parts),
        max_rel_error=_largest(part.max_rel_error for part in parts),
        tolerance=worst_part.tolerance,
        error_estimate=_largest(part.error_estimate for part in parts),
        worst=worst_part.worst,
        duration_s=time.perf_counter() - started,
        seed=first.seed,
        message="\n".join(lines),
        reproduce=reproduce,
        kinks=sum((prefixed(p.kinks, t) for p, t in zip(parts, titles)), ()),
        inconclusive=sum((prefixed(p.inconclusive, t) for p, t in zip(parts, titles)), ()),
        left_out=sum((prefixed(p.left_out, t) for p, t in zip(parts, titles)), ()),
        parts=tuple(parts),
    )


def _largest(values: Iterable[float]) -> float:
    """The largest value that is not NaN (NaN when there is none)."""
    return max((v for v in values if not math.isnan(v)), default=math.nan)
