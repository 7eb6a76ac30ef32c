"""What one sample's three outcomes add up to, the known documented disagreements, and the
summary of a run. Plain dicts and the standard library only, so the report can use it too.

torch's reference outcome is its slow mode (every Jacobian entry); where slow mode did not
finish (a timeout, an error) and fast mode did, fast mode's.
"""

from __future__ import annotations

import fnmatch
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

AGREE_PASS = "agree-pass"
AGREE_FAIL = "agree-fail"
OURS_FAIL = "ours-fail-torch-pass"
TORCH_FAIL = "torch-fail-ours-pass"
OURS_INCONCLUSIVE = "ours-inconclusive-torch-pass"
INCONCLUSIVE_TORCH_FAIL = "ours-inconclusive-torch-fail"
OURS_ERROR = "ours-error"
TORCH_ERROR = "torch-error"
BOTH_ERROR = "both-error"
TIMEOUT = "timeout"
NOTHING = "nothing-to-check"

CLASSES = (
    OURS_FAIL,
    TORCH_FAIL,
    OURS_ERROR,
    TIMEOUT,
    OURS_INCONCLUSIVE,
    INCONCLUSIVE_TORCH_FAIL,
    TORCH_ERROR,
    BOTH_ERROR,
    NOTHING,
    AGREE_FAIL,
    AGREE_PASS,
)
"""Every class, in display order: the disagreements and our exceptions first."""

DISAGREEMENTS = frozenset((OURS_FAIL, TORCH_FAIL, OURS_ERROR))
"""Classes that fail a run unless a known, documented reason explains them."""

FINISHED = ("passed", "failed")

JUDGED = frozenset((OURS_FAIL, TORCH_FAIL, AGREE_FAIL, OURS_INCONCLUSIVE, INCONCLUSIVE_TORCH_FAIL))
"""Classes in which both sides gave a verdict: where a known reason can apply."""

KNOWN: dict[str, tuple[str, str]] = {
    "nn.functional.max_unpool[123]d": (
        "documented",
        "duplicate indices: max_pool can pick one input element for several windows, so "
        "several max_unpool inputs are written to one output position and only one write "
        "survives; torch's backward (a gather) gives every one of them that position's "
        "gradient, a choice torch documents in sample_inputs_max_unpool_grad (its 'grad' "
        "variant keeps such samples out of gradient checks)",
    ),
    "normal": (
        "documented",
        "torch.normal's backward gives zero gradients to mean and std by design (the draw is "
        "not differentiated; torch.distributions.Normal(...).rsample() is the pathwise "
        "alternative), while under the OpInfo's fixed seed the finite differences measure "
        "the pathwise derivative (1 for mean, (x - mean) / std for std)",
    ),
    "as_strided_scatter": (
        "torch-bug",
        "torch 2.14.1's reverse-mode gradient of as_strided_scatter masks the complement of "
        "the scattered region of the input's gradient; forward-mode AD agrees with the finite "
        "differences: a torch bug, reported as a failure of torch, not a gradcheck false alarm",
    ),
    "float": (
        "torch-false-alarm",
        "a cast of float64 to float32: torch's slow mode divides the float32 output's rounding "
        "(6e-8 relative) by its 1e-6 step and reads a Jacobian off by up to a few percent, "
        "while the derivative of a cast is exactly 1 (autograd's value); gradcheck rounds a "
        "float32 output at float32's epsilon",
    ),
    "cfloat": (
        "torch-false-alarm",
        "a cast of float64 to complex64: as for 'float', torch's 1e-6 step reads the float32 "
        "rounding of the output's real part as a Jacobian error; the derivative is exactly 1",
    ),
    "half": (
        "torch-false-alarm",
        "a cast of float64 to float16: torch's 1e-6 step (on the input at first order, on the "
        "cotangent in gradgradcheck) reads float16's rounding (5e-4 relative) as a Jacobian "
        "error, while the cast's derivative is exactly 1 and its second derivative 0",
    ),
    "bfloat16": (
        "torch-false-alarm",
        "a cast of float64 to bfloat16: as for 'half', torch's 1e-6 step reads bfloat16's "
        "rounding (4e-3 relative) as a Jacobian error; the derivative is exactly 1",
    ),
    "chalf": (
        "torch-false-alarm",
        "a cast of float64 to complex32: as for 'half', torch's 1e-6 step reads float16's "
        "rounding of the real part as a Jacobian error; the derivative is exactly 1",
    ),
    "linalg.householder_product": (
        "torch-false-alarm",
        "complex128 at second order: gradgradcheck's slow mode also differentiates the "
        "gradient with respect to the cotangent, with a 1e-6 step, and the sample's Jacobian "
        "reaches 4.7e3, so the step's rounding (~1e-6) reads as mismatches at entries that are "
        "exactly 0; torch passes with eps=1e-5 and in fast mode, and forward-over-reverse "
        "(mode='both': JVP of VJP) agrees with gradcheck's finite differences",
    ),
    "cov": (
        "torch-false-alarm",
        "a float32 aweights input: torch's slow mode perturbs it in float32 by 1e-6, a few "
        "float32 units, and reads the rounding of the perturbed input as a Jacobian mismatch; "
        "gradcheck evaluates the oracle on float64 copies",
    ),
    "sparse.mm": (
        "masked",
        "masked semantics: torch.sparse.mm(..., reduce=...)'s backward gives gradients at the "
        "stored elements only; torch's default gradcheck (masked=False) perturbs every element "
        "of the dense equivalent and fails, while torch.autograd.gradcheck(masked=True) passes "
        "these samples, as gradcheck does by checking the stored values",
    ),
    "__rpow__": (
        "non-finite",
        "the sample raises negative bases to non-integer powers, so most outputs are NaN and "
        "torch's Jacobian comparison fails on them; gradcheck leaves those output elements, and "
        "the inputs whose autograd gradient passes through them (0 * NaN), inconclusive with "
        "the reason and judges the rest",
    ),
}
"""Op-name glob -> (kind, reason): disagreements with a known cause. ``documented``: torch's
documented choice; ``torch-bug``: a real torch bug; ``torch-false-alarm``: torch's check fails
a correct gradient (shown by the derivative's closed form); ``non-finite``: the sample's
outputs are NaN/Inf where torch compares; ``masked``: torch's unmasked check of a sparse op
whose backward is masked. The last three explain only torch's failure (TORCH_SIDE_KINDS). Rows
of these ops are shown with the reason and not counted as unexplained."""


def reference(row: Mapping[str, Any]) -> dict[str, Any]:
    """torch's outcome that a row is compared with: slow mode, or fast mode where only it
    finished."""
    slow, fast = row["torch_slow"], row["torch_fast"]
    if slow["status"] not in FINISHED and fast["status"] in FINISHED:
        return dict(fast)
    return dict(slow)


def classify(row: Mapping[str, Any]) -> str:
    """The class of one row (a dict with ``ours``, ``torch_slow`` and ``torch_fast``)."""
    ours, theirs = row["ours"]["status"], reference(row)["status"]
    if ours == "error":
        return BOTH_ERROR if theirs == "error" else OURS_ERROR
    if TIMEOUT in (ours, theirs):
        return TIMEOUT
    if theirs == "error":
        return TORCH_ERROR
    if ours not in ("passed", "failed", "inconclusive"):
        return NOTHING
    table = {
        ("passed", "passed"): AGREE_PASS,
        ("passed", "failed"): TORCH_FAIL,
        ("failed", "passed"): OURS_FAIL,
        ("failed", "failed"): AGREE_FAIL,
        ("inconclusive", "passed"): OURS_INCONCLUSIVE,
        ("inconclusive", "failed"): INCONCLUSIVE_TORCH_FAIL,
    }
    return table[(ours, theirs)]


TORCH_SIDE_KINDS = frozenset(("torch-false-alarm", "non-finite", "masked"))
"""Kinds that explain only torch's failure (torch fails, ours passes or is inconclusive): a
failure of ours on such an op is never explained away by them."""


def known_reason(op_name: str, category: str) -> tuple[str, str]:
    """(kind, reason) of a known disagreement for ``op_name`` in ``category``, or ``("", "")``."""
    for pattern, (kind, reason) in KNOWN.items():
        if fnmatch.fnmatchcase(op_name, pattern):
            if kind in TORCH_SIDE_KINDS and category not in (TORCH_FAIL, INCONCLUSIVE_TORCH_FAIL):
                return "", ""
            return kind, reason
    return "", ""


def explain(row: Mapping[str, Any]) -> tuple[str, str, bool]:
    """(class, known reason, unexplained) of a row: a known reason is attached to the op's rows
    where both sides judged and did not both pass; a disagreement without one is
    unexplained (an exception from check_function always is)."""
    category = classify(row)
    kind, reason = known_reason(str(row["op"]), category) if category in JUDGED else ("", "")
    if not reason and row.get("expected_failure") and category in (TORCH_FAIL, AGREE_FAIL):
        kind, reason = "documented", "torch's OpInfo marks test_fn_grad an expected failure"
    shown = f"{kind}: {reason}" if reason else ""
    unexplained = category in DISAGREEMENTS and not (reason and category != OURS_ERROR)
    return category, shown, unexplained


def _ratio(row: Mapping[str, Any]) -> float | None:
    ours, slow = row["ours"], row["torch_slow"]
    if ours["status"] in ("timeout", "error") or slow["status"] not in FINISHED:
        return None
    if not slow.get("time_s"):
        return None
    return float(ours["time_s"]) / float(slow["time_s"])


_QUOTED = re.compile(r"'[^']*'")
_NUMBER = re.compile(r"\d+(\.\d+)?(e[-+]?\d+)?")


def cause(row: Mapping[str, Any]) -> str:
    """What a row that is not an agreeing pass comes down to, worded so that rows with one
    cause share it: our message's first line (torch's for a torch error), quoted names and
    numbers masked."""
    side = row["ours"] if row["category"] != TORCH_ERROR else reference(row)
    first = (str(side.get("message", "")).strip().splitlines() or [side["status"]])[0]
    return _NUMBER.sub("N", _QUOTED.sub("'…'", first))[:160]


def causes(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The unexplained rows grouped by (class, :func:`cause`), largest group first: each
    with ``category``, ``cause``, ``count`` and the ``samples`` (``key#sample``)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        if row["unexplained"]:
            where = f"{row['key']}#{row['sample']}"
            groups.setdefault((row["category"], cause(row)), []).append(where)
    ordered = sorted(groups.items(), key=lambda item: -len(item[1]))
    return [{"category": k[0], "cause": k[1], "count": len(v), "samples": v} for k, v in ordered]


def display_order(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Rows worst first: unexplained disagreements, then the other classes in
    :data:`CLASSES` order, database order kept within each."""
    rank = {name: i for i, name in enumerate(CLASSES)}
    return sorted(rows, key=lambda r: (not r["unexplained"], rank.get(r["category"], 99)))


def summarise(rows: Iterable[Mapping[str, Any]], skipped: Iterable[Any] = ()) -> dict[str, Any]:
    """Counts per class, the unexplained and explained disagreements (worst first), and the
    median ratio of our time to torch slow mode's over the rows both finished."""
    rows = list(rows)
    ratios = [r for r in (_ratio(row) for row in rows) if r is not None]
    counts = Counter(row["category"] for row in rows)
    listed = [
        {k: row[k] for k in ("key", "sample", "category", "reason", "unexplained")}
        for row in display_order(rows)
        if row["category"] in DISAGREEMENTS or row["reason"]
    ]
    return {
        "samples": len(rows),
        "ops": len({row["key"] for row in rows}),
        "skipped_ops": len(list(skipped)),
        "counts": {name: counts[name] for name in CLASSES if counts[name]},
        "unexplained": sum(1 for row in rows if row["unexplained"]),
        "explained": sum(1 for row in rows if row["reason"] and row["category"] != AGREE_PASS),
        "median_time_ratio": statistics.median(ratios) if ratios else None,
        "timed_samples": len(ratios),
        "disagreements": listed,
        "causes": causes(rows),
    }
