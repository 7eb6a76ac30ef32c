"""Default tolerances, as a table keyed by (autograd dtype, oracle name), and the one merge rule.

An element passes when ``|autograd - oracle| <= atol + rtol*|oracle| + error_factor*error``,
where ``error`` is the oracle's own error estimate (plus the rounding of the autograd side).

The float64 rows are tight enough to catch a systematic relative gradient error of 1e-6 on smooth
functions (``torch.autograd.gradcheck`` uses rtol=1e-3 and misses anything smaller) and loose
enough that correct gradients of ill-conditioned smooth functions pass: the finite-difference
oracle carries its error estimate, so its ``rtol`` can be small; ``atol`` absorbs cancellation in
formulas such as ``1 - tanh(x)**2`` that autograd evaluates in the input dtype. Lower precisions
are always judged against the float64 oracle, so their rows only widen for the autograd side's
own rounding.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from gradcheck.errors import InvalidArgument


@dataclass(frozen=True)
class Tolerance:
    """How far autograd may sit from an oracle: ``atol + rtol*|oracle| + error_factor*error``."""

    atol: float
    rtol: float
    error_factor: float

    def allowed(self, oracle_value: float, error_estimate: float) -> float:
        """The largest accepted ``|autograd - oracle|`` for one element."""
        return self.atol + self.rtol * abs(oracle_value) + self.error_factor * error_estimate

    def to_dict(self) -> dict[str, float]:
        """A JSON-ready copy."""
        return asdict(self)


_ORACLE_ROWS: dict[str, dict[torch.dtype, Tolerance]] = {
    "finite_difference": {
        torch.float64: Tolerance(atol=1e-12, rtol=1e-7, error_factor=4.0),
        torch.float32: Tolerance(atol=1e-6, rtol=1e-4, error_factor=4.0),
        torch.float16: Tolerance(atol=1e-3, rtol=1e-2, error_factor=4.0),
        torch.bfloat16: Tolerance(atol=1e-2, rtol=5e-2, error_factor=4.0),
    },
    "sympy": {
        torch.float64: Tolerance(atol=1e-13, rtol=1e-9, error_factor=1.0),
        torch.float32: Tolerance(atol=1e-6, rtol=1e-4, error_factor=1.0),
        torch.float16: Tolerance(atol=1e-3, rtol=1e-2, error_factor=1.0),
        torch.bfloat16: Tolerance(atol=1e-2, rtol=5e-2, error_factor=1.0),
    },
    # A reference formula (an optimiser's documented update, a closed-form trajectory) evaluated
    # in float64: as exact as SymPy up to float64 rounding of the formula itself.
    "formula": {
        torch.float64: Tolerance(atol=1e-13, rtol=1e-12, error_factor=1.0),
        torch.float32: Tolerance(atol=1e-6, rtol=1e-5, error_factor=1.0),
        torch.float16: Tolerance(atol=1e-3, rtol=1e-2, error_factor=1.0),
        torch.bfloat16: Tolerance(atol=1e-2, rtol=5e-2, error_factor=1.0),
    },
    # A number as a source prints it: its error estimate is half a unit in the last printed
    # digit, and only the measured side's own rounding is added.
    "stated": {
        torch.float64: Tolerance(atol=0.0, rtol=4 * 2.0**-52, error_factor=1.0),
        torch.float32: Tolerance(atol=0.0, rtol=4 * 2.0**-23, error_factor=1.0),
        torch.float16: Tolerance(atol=0.0, rtol=4 * 2.0**-10, error_factor=1.0),
        torch.bfloat16: Tolerance(atol=0.0, rtol=4 * 2.0**-7, error_factor=1.0),
    },
    "forward": {
        torch.float64: Tolerance(atol=1e-13, rtol=1e-9, error_factor=1.0),
        torch.float32: Tolerance(atol=1e-6, rtol=1e-4, error_factor=1.0),
        torch.float16: Tolerance(atol=1e-3, rtol=1e-2, error_factor=1.0),
        torch.bfloat16: Tolerance(atol=1e-2, rtol=5e-2, error_factor=1.0),
    },
}

TOLERANCES: dict[tuple[torch.dtype, str], Tolerance] = {
    (dtype, oracle): tolerance
    for oracle, rows in _ORACLE_ROWS.items()
    for dtype, tolerance in rows.items()
}
"""The default table: ``TOLERANCES[(torch.float64, "finite_difference")]`` and so on."""


def _validated(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(
            f"Got {name}={value!r}, but {name} must be a non-negative number or None. "
            f"Pass a float such as {name}=1e-8, or None for the table default."
        )
    if not math.isfinite(value) or value < 0:
        raise InvalidArgument(
            f"Got {name}={value!r}, but {name} must be finite and >= 0. "
            f"Pass a float such as {name}=1e-8, or None for the table default."
        )
    return float(value)


def resolve_tolerance(
    dtype: torch.dtype, oracle: str, *, atol: float | None = None, rtol: float | None = None
) -> Tolerance:
    """Merge the caller's ``atol``/``rtol`` (when not None) over the table row for the pair."""
    atol = _validated("atol", atol)
    rtol = _validated("rtol", rtol)
    default = TOLERANCES.get((dtype, oracle))
    if default is None:
        known = sorted({str(d).removeprefix("torch.") for d, _ in TOLERANCES})
        raise InvalidArgument(
            f"Got dtype={dtype}, but gradcheck has no tolerances for it with oracle "
            f"{oracle!r}. Supported dtypes: {', '.join(known)}."
        )
    return Tolerance(
        atol=default.atol if atol is None else atol,
        rtol=default.rtol if rtol is None else rtol,
        error_factor=default.error_factor,
    )
