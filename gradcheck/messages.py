"""Every check's text in one place: headlines, mismatch lines, notes and reproduce lines.

A failure reads the same way whichever check found it (the shape of the design note)::

    Gradient mismatch: check_function 'my_square' (float64, cpu), d out / d x
      worst at x[3] = -0.8999: autograd 10.0012, finite_difference 9.99998 (+/- 2e-9)
      |diff| 1.2e-3 > tolerance 1.0e-7 + 1e-6*|oracle| ...; 3 of 16 elements fail
      reproduce: gradcheck.check_function(my_square, x, seed=1234)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from gradcheck.judge import Verdict
from gradcheck.tolerances import Tolerance

SHOWN_NOTES = 5
"""An inconclusive message lists this many undecided elements, then counts the rest."""

SHOWN_ROWS = 8
"""A module or parity failure lists this many failing rows, then counts the rest."""


def subject(check: str, label: str, details: str) -> str:
    """``check_function 'my_square' (float64, cpu)``: which check, on what, in which setting."""
    return f"{check} {label!r} ({details})"


def reproduce_line(call: str) -> str:
    """The last line of every message: the call that re-runs the check."""
    return f"  reproduce: {call}"


def kink_note(measured_label: str, value: float, lower: float | None, upper: float | None) -> str:
    """The note of an element on a kink whose measured value is a valid subgradient."""
    return (
        f"on a kink: {measured_label} {format_number(value)} within the one-sided "
        f"derivatives [{format_number(lower)}, {format_number(upper)}]"
    )


def inconclusive_note(reason: str | None) -> str:
    """The note of an element the oracle could not decide."""
    return f"inconclusive: {reason}"


def listed(lines: Sequence[str], shown: int) -> list[str]:
    """The first ``shown`` lines, then ``... and N more`` when some were left out."""
    out = list(lines[:shown])
    if len(lines) > shown:
        out.append(f"  ... and {len(lines) - shown} more")
    return out


def format_number(value: float | None, digits: int = 6) -> str:
    """A compact number for messages: ``digits`` significant digits (6 by default)."""
    if value is None:
        return "-"
    return f"{value:.{digits}g}"


def distinguishing_digits(a: float, b: float) -> int:
    """Enough significant digits (6 to 17) for ``a`` and ``b`` to print differently."""
    scale = max(abs(a), abs(b))
    if a == b or scale == 0 or not math.isfinite(a - b):
        return 6
    return min(17, max(6, math.ceil(-math.log10(abs(a - b) / scale)) + 2))


def failure_text(
    *,
    headline: str,
    where: str,
    point: float | None,
    autograd: float,
    oracle_name: str,
    oracle_value: float,
    error_estimate: float,
    lower: float | None,
    upper: float | None,
    verdict: Verdict,
    tolerance: Tolerance,
    failed: int,
    total: int,
    reproduce: str,
    measured_label: str = "autograd",
) -> str:
    """The mismatch message in the shape of the design note (headline, where, numbers, rule).

    ``measured_label`` names the side under test (``"measured"`` for values that are not
    gradients)."""
    at = f" = {format_number(point)}" if point is not None else ""
    digits = 6
    if lower is not None and upper is not None:
        bounds = f"[{format_number(lower)}, {format_number(upper)}]"
        judged = f"{oracle_name} subgradients {bounds} (a kink)"
    else:
        digits = distinguishing_digits(autograd, oracle_value)
        judged = f"{oracle_name} {format_number(oracle_value, digits)} (+/- {error_estimate:.1g})"
    rule = (
        f"tolerance {tolerance.atol:.1e} + {tolerance.rtol:.1e}*|oracle| + "
        f"{tolerance.error_factor:g}*error = {verdict.allowed:.2e}"
    )
    return "\n".join(
        [
            headline,
            f"  worst at {where}{at}: {measured_label} {format_number(autograd, digits)}, {judged}",
            f"  |diff| {verdict.abs_error:.2e} > {rule}; {failed} of {total} elements fail",
            f"  reproduce: {reproduce}",
        ]
    )


def worst_output_line(
    output: str, autograd: float, oracle_name: str, oracle_value: float, others: float
) -> str:
    """The line that names the output a multi-output mismatch comes from."""
    digits = distinguishing_digits(autograd, oracle_value)
    return (
        f"  from {output}: its derivative alone is autograd {format_number(autograd, digits)}, "
        f"{oracle_name} {format_number(oracle_value, digits)} (the other outputs differ by at "
        f"most {others:.1e})"
    )


# -- whole modules -----------------------------------------------------------------------------


def shape_text(shape: Sequence[int]) -> str:
    """``64x3x7x7``, or ``scalar``."""
    return "x".join(str(s) for s in shape) or "scalar"


def module_row_failure(
    name: str,
    shape: Sequence[int],
    note: str,
    autograd: float,
    oracle: float,
    error_estimate: float,
    relative_error: float,
    allowed: float,
) -> str:
    """One failing row of a module check: the two directional derivatives and the rule."""
    if note:
        return f"  {name} [{shape_text(shape)}]: {note}"
    return (
        f"  {name} [{shape_text(shape)}]: autograd {autograd:.9g} vs finite_difference "
        f"{oracle:.9g} (+/- {error_estimate:.1g}) along a random direction; relative "
        f"error {relative_error:.1e}, |diff| {abs(autograd - oracle):.2g} > allowed "
        f"{allowed:.2g}"
    )


def likely_culprit(culprit: str, downstream: str | None) -> str:
    """Where a wrong gradient enters: the failing row closest to the output."""
    where = f" ({downstream})" if downstream else ""
    return (
        f"  likely culprit: {culprit}, the failing row closest to the output: the rows "
        f"downstream of it pass, so the wrong gradient enters in its own backward or in an "
        f"operation between it and the next row{where}"
    )


def zero_gradient_rows(zero: Sequence[str], total: int) -> str:
    """The note on rows whose gradient is exactly zero (they prove little)."""
    return (
        f"  note: {len(zero)} of {total} rows have an all-zero gradient, so they prove "
        f"little (first: {', '.join(zero[:3])}); a zero-initialised layer downstream blocks "
        "every gradient: give it random weights to check the layers behind it"
    )


# check_module's trust notes: a module that is not a function of its inputs, a backward that is
# not reentrant, an exception at the point or at a perturbed point.


def module_not_a_function(cause: str) -> str:
    """Why every row of an impure module is inconclusive."""
    return (
        f"the module is not a function of its inputs: {cause}, so finite differences of it "
        "measure nothing; make forward depend only on its inputs, parameters and buffers "
        "(draw randomness from torch's generator, which check_module seeds, not from numpy or "
        "random; keep no call counters that change the output)"
    )


def module_center_gap(first: float, second: float, when: str) -> str:
    """Two evaluations at the same point that differ."""
    return (
        f"two evaluations at the same point differ by {abs(first - second):.3g} "
        f"({first!r} and {second!r}, {when})"
    )


def module_shape_change(before: object, after: object) -> str:
    """An output whose shapes changed between two evaluations."""
    return f"its output changed from shapes {before} to {after} between two evaluations"


def module_not_reentrant(name: str, gap: float, nondet_tol: float) -> str:
    """A tensor whose gradient differs between two runs of the same backward."""
    return (
        f"backward is not reentrant: running autograd's backward twice with the same loss gave "
        f"gradients for {name} that differ by up to {gap:.3g} (nondet_tol={nondet_tol!r}); a "
        "nondeterministic kernel (atomic adds on a GPU) or a backward with state; pass "
        "nondet_tol= to accept differences this small"
    )


def module_raised(stage: str, exc: BaseException) -> str:
    """What check_module was doing when the module raised at the unperturbed point."""
    return (
        f"The module raised {type(exc).__name__}: {_message_line(exc)} while check_module was "
        f"{stage}. "
        "check_module needs forward (and backward) to run at the inputs given; if an input "
        "is a target or an index, leave its requires_grad False or pass inputs_to_check= "
        "with the positions to differentiate."
    )


def module_raised_at_step(reason: str, exception: str) -> str:
    """An undecided direction whose perturbed points made the module raise."""
    return f"{reason} (the module raised {exception} there)"


def exception_text(exc: BaseException) -> str:
    """``RuntimeError: first line of the message``."""
    return f"{type(exc).__name__}: {_message_line(exc)[:200]}"


def _message_line(exc: BaseException) -> str:
    """The first line of an exception's message ('' for an empty one)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def parity_message(
    label: str,
    rows: Sequence[tuple[str, str, float, float, float]],
    failed: Sequence[tuple[str, str, float, float, float]],
    skipped: Sequence[tuple[str, str]],
) -> str:
    """The message of a device-parity check. Each row is (tensor, device, relative error,
    allowed, max |diff|)."""
    lines = []
    if failed:
        lines.append(
            f"Gradient mismatch across devices: {label}: {len(failed)} of {len(rows)} "
            "tensors differ by more than allowed (normwise relative)"
        )
        lines += listed(
            [
                f"  {name} on {device}: relative error {relative:.2e} > allowed "
                f"{allowed:.1e}, max |diff| {largest:.2e}"
                for name, device, relative, allowed, largest in failed
            ],
            SHOWN_ROWS,
        )
    elif rows:
        name, device, relative, _, _ = max(rows, key=lambda r: r[2])
        lines.append(
            f"{label}: {len(rows)} tensors agree; worst relative error {relative:.1e} at "
            f"{name} on {device}"
        )
    else:
        lines.append(f"{label}: skipped, no device besides the reference could run")
    lines += [f"  skipped {device}: {reason}" for device, reason in skipped]
    return "\n".join(lines)


class ReferenceLine(NamedTuple):
    """What a reference check's message shows of one row."""

    name: str
    kind: str
    status: str
    candidate: float
    baseline: float
    ratio: float
    allowed: float
    elementwise: float
    allowed_elementwise: float
    note: str


def _reference_row_line(row: ReferenceLine) -> str:
    what = "output" if row.kind == "output" else f"d/d {row.kind}"
    line = (
        f"  {row.name} ({what}): error {row.candidate:.2e} vs the reference's {row.baseline:.2e}"
        f" normwise ({row.ratio:.3g}x), allowed {row.allowed:.2e}; elementwise "
        f"{row.elementwise:.2e}, allowed {row.allowed_elementwise:.2e}"
    )
    return f"{line}\n    {row.note}" if row.note else line


def reference_message(
    label: str,
    rows: Sequence[ReferenceLine],
    reference_check: str,
    reference_note: str,
    multiplier: float,
    call: str,
) -> str:
    """The message of check_against_reference / check_compiled: the headline, the failing
    (or undecided) rows, the reference's own check when it did not pass, the reproduce line."""
    failed = [r for r in rows if r.status == "failed"]
    undecided = [r for r in rows if r.status == "inconclusive"]
    lines = []
    if reference_check == "failed":
        lines.append(
            f"Wrong reference: {label}: the reference's own float64 gradient failed its check, "
            f"so no gradient was judged against it: {reference_note}"
        )
    if failed:
        lines.append(
            f"Gradient mismatch against the float64 reference: {label}: {len(failed)} of "
            f"{len(rows)} tensors are more than {multiplier:g} x the reference's own error"
        )
        lines += listed([_reference_row_line(r) for r in failed], SHOWN_ROWS)
    if undecided:
        lines.append(f"{label}: {len(undecided)} of {len(rows)} tensors not judged")
        lines += listed([_reference_row_line(r) for r in undecided], SHOWN_ROWS)
    if not failed and not undecided and rows:
        worst = max(rows, key=lambda r: r.candidate / r.allowed if r.allowed > 0 else 0.0)
        lines.append(
            f"{label}: {len(rows)} tensors within {multiplier:g} x the reference's own error; "
            f"closest {worst.name}: {worst.candidate:.2e} vs the reference's "
            f"{worst.baseline:.2e} normwise ({worst.ratio:.3g}x)"
        )
    if reference_check == "inconclusive":
        lines.append(f"  the reference's float64 gradient was not verified: {reference_note}")
    lines.append(reproduce_line(call))
    return "\n".join(lines)


def rank_problem_line(rank: int, tensor: str, problem: str) -> str:
    """One rank's problem: ``rank 1 died (killed by SIGKILL) while backward of ...`` or
    ``rank 1's gradient of fc.weight differs from rank 0's ...``."""
    if tensor:
        return f"  rank {rank}'s gradient of {tensor} {problem}"
    return f"  rank {rank} {problem}"


def scale_hint(scale: float, world_size: int, accumulation_steps: int) -> str:
    """What a uniform factor between the ranks' gradients and the reference's usually means
    (every cause whose factor it is, when several have the same)."""
    causes = [
        (
            world_size,
            f"summed over the {world_size} ranks without dividing by world_size (a comm hook "
            "that all-reduces without dividing, or a sum loss checked as reduction='mean')",
        ),
        (
            accumulation_steps,
            f"the {accumulation_steps} micro-batches' losses were not divided by "
            "accumulation_steps",
        ),
        (
            world_size * accumulation_steps if min(world_size, accumulation_steps) > 1 else 1,
            "neither divided by world_size nor by accumulation_steps",
        ),
        (
            1.0 / world_size,
            "divided by world_size once too often (a sum loss must be multiplied by world_size "
            "before backward, as DDP averages; or pass reduction='sum')",
        ),
        (1.0 / accumulation_steps, "divided by accumulation_steps once too often"),
    ]
    matching = list(
        dict.fromkeys(
            cause
            for factor, cause in causes
            if factor != 1 and abs(scale - factor) <= 0.01 * factor
        )
    )
    headline = f"every failing gradient is {scale:.4g} x the reference's"
    if not matching:
        return f"{headline} (a uniform scale)"
    return f"{headline}: {'; or '.join(matching)}"


def distributed_message(
    label: str, rank_lines: Sequence[str], hints: Sequence[str], rows_part: str
) -> str:
    """The message of check_distributed: the ranks' problems, then the rows' part
    (:func:`reference_message`) with the hints (what the failing rows have in common) before
    its last line, the reproduce line."""
    lines = []
    if rank_lines:
        lines.append(f"Rank failure: {label}: {len(rank_lines)} problem(s)")
        lines += listed(list(rank_lines), SHOWN_ROWS)
    rows_lines = rows_part.splitlines()
    lines += rows_lines[:-1] + [f"  hint: {hint}" for hint in hints] + rows_lines[-1:]
    return "\n".join(lines)


def broken_contract(problems: Sequence[str]) -> str:
    """Why a backward that may give the right numbers still fails: what it owes besides them."""
    shown = listed([f"  {problem}" for problem in problems], SHOWN_NOTES)
    return "\n".join(
        [
            f"backward breaks its contract in {len(problems)} way(s) (the gradient values were "
            "not judged):",
            *shown,
        ]
    )
