"""One tensor's row of a reference check, as every check against a float64 golden value builds
it (:func:`gradcheck.check_against_reference`, :func:`gradcheck.check_compiled`,
:func:`gradcheck.check_distributed`): the gate's errors and limits recorded, the spread between
repeated runs, and a row capped when the golden value itself could not be verified."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from gradcheck import messages
from gradcheck.reference import gate
from gradcheck.reference_results import ReferenceRow
from gradcheck.status import FAILED, INCONCLUSIVE, PASSED

NOT_JUDGED_WRONG_REFERENCE = (
    "not judged: the reference's own float64 gradient failed its check, so it is no golden value"
)
UNVERIFIED_REFERENCE = (
    "not judged: the reference's own float64 gradient could not be verified ({reason}); pass "
    "verify_reference=False to trust it unchecked"
)


@dataclass(frozen=True)
class Verification:
    """The reference's own float64 check: its status, the first line of its message unless
    passed, and for a module the tensors it left undecided (row name -> why); None when the
    undecided part cannot be told by tensor (check_function: then every tensor)."""

    status: str
    note: str
    undecided: dict[str, str] | None = None


def verification(result: Any, by_tensor: bool) -> Verification:
    """``result`` (a check_function or check_module result on the float64 reference) as a
    :class:`Verification`; ``by_tensor`` when its rows name the same tensors as ours (a
    module's check_module)."""
    if result.status == PASSED:
        return Verification(PASSED, "")
    status = FAILED if result.status == FAILED else INCONCLUSIVE
    undecided = None
    if by_tensor:
        undecided = {
            row.name: f"check_module's row is {row.status}: {row.note or 'undecided'}"
            for row in result.rows
            if row.status != PASSED
        }
    return Verification(status, result.message.splitlines()[0], undecided)


def capped(row: ReferenceRow, verified: Verification) -> ReferenceRow:
    """A gradient row judged against a wrong reference is not judged; against an unverified
    one (for a module: a tensor check_module left undecided) it is never passed (a failure
    stays: the two disagree either way)."""
    if verified.status == FAILED:
        return with_status(row, INCONCLUSIVE, NOT_JUDGED_WRONG_REFERENCE)
    if verified.status != INCONCLUSIVE or row.status != PASSED:
        return row
    if verified.undecided is None:
        return with_status(row, INCONCLUSIVE, UNVERIFIED_REFERENCE.format(reason=verified.note))
    if row.name in verified.undecided:
        reason = verified.undecided[row.name]
        return with_status(row, INCONCLUSIVE, UNVERIFIED_REFERENCE.format(reason=reason))
    return row


def with_status(row: ReferenceRow, status: str, note: str) -> ReferenceRow:
    """``row`` with another status and note."""
    return dataclasses.replace(row, status=status, note=note)


def spread(values: list[torch.Tensor], golden: torch.Tensor) -> float:
    """The largest normwise difference between a repeat and the first run (relative to the
    golden value's norm); 0 only when every run is bitwise identical to the first."""
    first = values[0].detach()
    scale = float(golden[torch.isfinite(golden)].norm())
    largest = 0.0
    for other in values[1:]:
        if bitwise_equal(first, other):
            continue
        difference = (other.double() - first.double()).nan_to_num(nan=math.inf).norm()
        size = float(difference) / scale if scale > 0 else float(difference)
        largest = max(largest, size if size > 0 else math.ulp(0.0))
    return largest


def bitwise_equal(first: torch.Tensor, other: torch.Tensor) -> bool:
    """True when the two tensors hold the same bits (NaNs with the same payload included)."""
    if first.dtype != other.dtype or first.shape != other.shape:
        return False
    return torch.equal(
        first.detach().cpu().reshape(-1).contiguous().view(torch.uint8),
        other.detach().cpu().reshape(-1).contiguous().view(torch.uint8),
    )


def record(
    name: str,
    kind: str,
    golden: torch.Tensor,
    dtype: torch.dtype,
    multiplier: float,
    verdict: tuple[str, str],
    errors: tuple[gate.Errors | None, gate.Errors],
    spread_size: float,
) -> ReferenceRow:
    """The row of tensor ``name``: ``verdict`` is (status, note), ``errors`` the candidate's
    (None when it has no value to measure) and the baseline's, against ``golden``."""
    candidate, base = errors
    allowed = gate.limits(base, dtype, multiplier)
    normwise = math.nan if candidate is None else candidate.normwise
    elementwise = math.nan if candidate is None else candidate.elementwise
    finite = golden[torch.isfinite(golden)]
    compared, left_out = gate.compared_elements(golden)
    return ReferenceRow(
        name=name,
        kind=kind,
        shape=tuple(golden.shape),
        dtype=str(dtype).removeprefix("torch."),
        status=verdict[0],
        candidate_error=normwise,
        baseline_error=base.normwise,
        ratio=gate.ratio(normwise, base.normwise),
        allowed=allowed.normwise,
        candidate_elementwise=elementwise,
        baseline_elementwise=base.elementwise,
        ratio_elementwise=gate.ratio(elementwise, base.elementwise),
        allowed_elementwise=allowed.elementwise,
        floor=allowed.floor,
        spread=spread_size,
        golden_norm=float(finite.norm()) if finite.numel() else 0.0,
        compared=compared,
        left_out=left_out,
        note=verdict[1],
    )


def shown(row: ReferenceRow) -> messages.ReferenceLine:
    """The row as the message's line."""
    return messages.ReferenceLine(
        row.name,
        row.kind,
        row.status,
        row.candidate_error,
        row.baseline_error,
        row.ratio,
        row.allowed,
        row.candidate_elementwise,
        row.allowed_elementwise,
        row.note,
    )
