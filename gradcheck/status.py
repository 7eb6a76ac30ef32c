"""The one status vocabulary: every result, row, report page and matrix uses these words.

Plain strings (not an enum) so that results serialise to JSON unchanged and a saved report from
an earlier run reads the same. Standard library only: the report and the pytest plugin import it
without torch.
"""

from __future__ import annotations

PASSED = "passed"
"""Judged, and it holds: every element, row or claim within its tolerance."""

FAILED = "failed"
"""Judged, and it does not hold: a gradient bug, a wrong number, a rule broken."""

INCONCLUSIVE = "inconclusive"
"""The oracle could not decide (no convergence, NaN/Inf, a jump): never a gradient bug."""

KINK = "kink"
"""An element on a non-differentiable point where autograd gave a valid subgradient."""

KINK_AFFECTED = "kink-affected"
"""A module row whose every direction crossed a switch point (ReLU, max-pool) within the
smallest step: autograd lies between the one-sided derivatives, so it is not failed, but not
proved either."""

INCOMPLETE = "incomplete"
"""A module check or a run with no failure but something undecided (kink-affected,
inconclusive)."""

SKIPPED = "skipped"
"""Could not be judged here (a fact of torch outside its known version range, no GPU): never
counted as passed."""

ERROR = "error"
"""A test that raised outside its assertions (pytest's outcome word)."""

XFAILED = "xfailed"
"""A test expected to fail that failed (pytest's outcome word)."""

XPASSED = "xpassed"
"""A test expected to fail that passed (pytest's outcome word)."""

EXPECTED_FAILURE = "failed, as expected"
"""A failure recorded inside a passing test (a planted bug that was caught)."""

EMPTY = "empty"
"""A run in which nothing ran."""

FAILURES = frozenset((FAILED, ERROR))
"""Test outcomes that count as a failure."""

RANK = {
    ERROR: 0,
    FAILED: 1,
    XPASSED: 2,
    INCOMPLETE: 3,
    KINK_AFFECTED: 3,
    INCONCLUSIVE: 3,
    SKIPPED: 4,
    XFAILED: 5,
    EXPECTED_FAILURE: 5,
    PASSED: 6,
}
"""Worst first: how reports order rows of mixed statuses."""

CLAIM_MARKS = {PASSED: "ok", FAILED: "FAILED", SKIPPED: "skip"}
"""How a claim's status reads at the start of a line of text."""


def overall(statuses: list[str] | tuple[str, ...]) -> str:
    """What several parts add up to: failed if one failed, passed if every part passed (and
    there is one), skipped if every part was skipped, incomplete otherwise."""
    if any(s in FAILURES for s in statuses):
        return FAILED
    if statuses and all(s == PASSED for s in statuses):
        return PASSED
    if statuses and all(s == SKIPPED for s in statuses):
        return SKIPPED
    return INCOMPLETE
