"""Element verdicts -> a :class:`~gradcheck.CheckResult` with its message, for every element-wise
check (check_function on gradients, check_values on any measured numbers).

The check says how to name an element (:class:`Elements`) and what its headlines read; this
module summarises the verdicts, picks the worst element, writes the kink and inconclusive notes
and the message (:mod:`gradcheck.messages`), and builds the frozen result.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from gradcheck import messages
from gradcheck.judge import Verdict, summarize
from gradcheck.oracles.base import Estimate
from gradcheck.results import CheckResult, ElementReport, Note
from gradcheck.status import FAILED, INCONCLUSIVE, KINK, PASSED
from gradcheck.tolerances import Tolerance

Location = tuple[str | None, tuple[int, ...] | None, int | None, float | None]
"""(input name, index within it, random direction, input value) of one element."""


@dataclass(frozen=True)
class Elements:
    """How a check names its elements and words its message.

    ``locate(p)`` gives element ``p``'s :data:`Location`, ``where(p)`` its text (``x[3]``);
    ``headline(kind, p)`` the first line of a failure (``p`` the worst element) or of an
    inconclusive result (``p`` None); ``matched`` the start of a pass line; ``noun`` what an
    element is called in counts; ``measured_label`` the side under test.
    """

    locate: Callable[[int], Location]
    where: Callable[[int], str]
    headline: Callable[[str, int | None], str]
    matched: str
    noun: str = "elements"
    measured_label: str = "autograd"
    mismatch: str = "Gradient mismatch"


@dataclass(frozen=True)
class Judged:
    """What was compared: the measured values, the oracle's estimate and their verdicts."""

    measured: Sequence[float]
    estimate: Estimate
    verdicts: Sequence[Verdict]
    tolerance: Tolerance
    oracle: str


@dataclass(frozen=True)
class Identity:
    """The fields of a result that describe the check rather than its findings."""

    name: str
    dtype: str
    device: str
    mode: str
    seed: int
    reproduce: str
    started: float


def element_result(
    judged: Judged, elements: Elements, identity: Identity, *, left_out: tuple[Note, ...] = ()
) -> CheckResult:
    """The :class:`CheckResult` of ``judged``, named and worded by ``elements``; ``left_out``
    lists what was not judged at all, and why."""
    summary = summarize(judged.verdicts)
    report = None if summary.worst is None else _report(judged, elements, summary.worst)
    kinks = tuple(
        Note(
            elements.where(p),
            messages.kink_note(
                elements.measured_label,
                judged.measured[p],
                judged.estimate.lower[p],
                judged.estimate.upper[p],
            ),
        )
        for p, v in enumerate(judged.verdicts)
        if v.status == KINK
    )
    undecided = tuple(
        Note(elements.where(p), messages.inconclusive_note(v.reason))
        for p, v in enumerate(judged.verdicts)
        if not v.decided
    )
    if summary.status == FAILED:
        assert report is not None and summary.worst is not None
        message = _failure_message(judged, elements, identity, report, summary.worst)
    elif summary.status == INCONCLUSIVE:
        message = _inconclusive_message(judged, elements, identity, undecided)
    else:
        extra = f", {len(kinks)} on kinks" if kinks else ""
        extra += f", {len(undecided)} inconclusive" if undecided else ""
        message = (
            f"{elements.matched}: {len(summary.decided)} of {len(judged.verdicts)} "
            f"{elements.noun} checked{extra}; max |diff| {summary.max_abs_error:.2e} "
            f"(relative {summary.max_rel_error:.2e})"
        )
    errors = [judged.estimate.errors[p] for p in summary.decided]
    return CheckResult(
        passed=summary.status == PASSED,
        status=summary.status,
        name=identity.name,
        oracle=judged.oracle,
        dtype=identity.dtype,
        device=identity.device,
        mode=identity.mode,
        checked=len(summary.decided),
        failed=len(summary.failures),
        max_abs_error=summary.max_abs_error,
        max_rel_error=summary.max_rel_error,
        tolerance=judged.tolerance,
        error_estimate=max(errors, default=math.nan),
        worst=report,
        duration_s=time.perf_counter() - identity.started,
        seed=identity.seed,
        message=message,
        reproduce=identity.reproduce,
        kinks=kinks,
        inconclusive=undecided,
        left_out=left_out,
    )


NOTHING_TO_CHECK = (
    "every differentiable input is empty, so there is no gradient element to judge (this is "
    "neither a pass nor a failure)"
)


def nondeterminism(first: torch.Tensor, second: torch.Tensor, tolerance: float) -> str | None:
    """Why two backward passes with the same cotangent disagree beyond ``tolerance`` (their
    NaNs must sit at the same elements), or None when they agree."""
    if torch.equal(first, second):
        return None
    same = (first == second) | (torch.isnan(first) & torch.isnan(second))
    difference = torch.where(same, 0.0, (first - second).abs().nan_to_num(nan=math.inf))
    largest = float(difference.max()) if difference.numel() else 0.0
    if largest <= tolerance:
        return None
    count = int((difference > tolerance).sum())
    return (
        f"backward is not deterministic: two backward passes with the same cotangent differ "
        f"by up to {largest:.3g} in {count} of {difference.numel()} elements (nondet_tol="
        f"{tolerance:g}); a gradient that changes from call to call cannot be checked. Pass "
        "nondet_tol= the size of the expected nondeterminism (atomic adds on a GPU), as "
        "torch.autograd.gradcheck takes it"
    )


def unjudged_result(
    status: str,
    reason: str,
    judged: Judged,
    elements: Elements,
    identity: Identity,
    *,
    left_out: tuple[Note, ...] = (),
) -> CheckResult:
    """A result decided before any element was judged: ``"failed"`` (backward is not
    deterministic) or ``"skipped"`` (nothing to check), with ``reason`` in its message."""
    kind = elements.mismatch if status == FAILED else "Nothing to check"
    message = "\n".join(
        [f"{elements.headline(kind, None)}: {reason}", messages.reproduce_line(identity.reproduce)]
    )
    return CheckResult(
        passed=False,
        status=status,
        name=identity.name,
        oracle=judged.oracle,
        dtype=identity.dtype,
        device=identity.device,
        mode=identity.mode,
        checked=0,
        failed=0,
        max_abs_error=math.nan,
        max_rel_error=math.nan,
        tolerance=judged.tolerance,
        error_estimate=math.nan,
        worst=None,
        duration_s=time.perf_counter() - identity.started,
        seed=identity.seed,
        message=message,
        reproduce=identity.reproduce,
        left_out=left_out,
    )


def _report(judged: Judged, elements: Elements, p: int) -> ElementReport:
    name, index, direction, point = elements.locate(p)
    return ElementReport(
        input=name,
        index=index,
        direction=direction,
        point=point,
        autograd=judged.measured[p],
        oracle=judged.estimate.values[p],
        error_estimate=judged.estimate.errors[p],
        abs_error=judged.verdicts[p].abs_error,
        allowed=judged.verdicts[p].allowed,
        lower=judged.estimate.lower[p],
        upper=judged.estimate.upper[p],
    )


def _failure_message(
    judged: Judged, elements: Elements, identity: Identity, report: ElementReport, worst: int
) -> str:
    return messages.failure_text(
        headline=elements.headline(elements.mismatch, worst),
        where=elements.where(worst),
        point=report.point,
        autograd=report.autograd,
        oracle_name=judged.oracle,
        oracle_value=report.oracle,
        error_estimate=report.error_estimate,
        lower=report.lower,
        upper=report.upper,
        verdict=judged.verdicts[worst],
        tolerance=judged.tolerance,
        failed=sum(v.status == FAILED for v in judged.verdicts),
        total=len(judged.verdicts),
        reproduce=identity.reproduce,
        measured_label=elements.measured_label,
    )


def _inconclusive_message(
    judged: Judged, elements: Elements, identity: Identity, undecided: tuple[Note, ...]
) -> str:
    shown = [f"  {n.where}: {n.reason}" for n in undecided]
    lines = [
        f"{elements.headline('Inconclusive', None)}: {judged.oracle} decided none of "
        f"{len(judged.verdicts)} {elements.noun} (this is not a gradient bug)",
        *messages.listed(shown, messages.SHOWN_NOTES),
        messages.reproduce_line(identity.reproduce),
    ]
    return "\n".join(lines)
