"""``check_values``: a measured value against an oracle's value, as a :class:`CheckResult`.

Scenarios compare more than gradients: a ``.grad`` after two backward calls, a weight after an
optimiser step, a loss after ten epochs. Each such number is judged like a gradient element: the
measured value (what torch produced) against an oracle's value (SymPy, a reference formula,
finite differences, or the number as a source printed it) under the tolerance table's row for
(measured dtype, oracle), with the oracle's error estimate added. A printed number's error
estimate is half a unit in its last printed digit (:func:`printed_half_unit`).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence

import torch

from gradcheck import validation
from gradcheck.element_results import Elements, Identity, Judged, element_result
from gradcheck.errors import InvalidArgument
from gradcheck.judge import judge
from gradcheck.oracles.base import Estimate, unravel
from gradcheck.recording import recorded
from gradcheck.results import CheckResult
from gradcheck.tolerances import resolve_tolerance

Numbers = torch.Tensor | float | Sequence[float]

_DECIMAL = re.compile(r"^[+-]?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$")


def printed_half_unit(text: str) -> float:
    """Half a unit in the last printed digit of ``text``: the rounding a printed number carries.

    ``"1.3333"`` gives 5e-05, ``"6.4465e-01"`` 5e-06 and ``"256.000"`` 5e-04. A number printed
    without a fractional digit (``"3."``, how torch prints an integer-valued float, or ``"123"``)
    is exact and gives 0.
    """
    match = _DECIMAL.match(text.strip())
    if not match or not (match.group(1) or match.group(2)):
        raise InvalidArgument(
            f"Got stated value {text!r}, but it must be a decimal number as printed, for "
            "example '1.3333', '6.4465e-01' or '3.'."
        )
    fraction = match.group(2) or ""
    if not fraction:
        return 0.0
    exponent = int(match.group(3) or 0)
    return 0.5 * 10.0 ** (exponent - len(fraction))


def as_floats(values: Numbers, label: str = "values") -> list[float]:
    """``values`` (a tensor, a number or a sequence of numbers) as a flat list of floats."""
    if isinstance(values, torch.Tensor):
        return values.detach().to("cpu", torch.float64).reshape(-1).tolist()
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        return [float(values)]
    if isinstance(values, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    ):
        return [float(v) for v in values]
    raise InvalidArgument(
        f"Got {label} of type {type(values).__name__}, but it must be a tensor, a number or a "
        "sequence of numbers."
    )


@recorded
def check_values(
    name: str,
    measured: Numbers,
    expected: Numbers,
    *,
    oracle: str,
    errors: Numbers | None = None,
    lower: Numbers | None = None,
    upper: Numbers | None = None,
    dtype: torch.dtype | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
    reproduce: str = "",
) -> CheckResult:
    """Judge ``measured`` (what torch produced) against ``expected`` (an oracle's values).

    ``oracle`` names the judge (``"sympy"``, ``"finite_difference"``, ``"formula"``, ``"stated"``)
    and picks the tolerance row with ``dtype`` (default: ``measured``'s dtype, float64 for plain
    numbers); ``errors`` are the oracle's error estimates (default 0); ``atol``/``rtol`` override
    the row. An expected NaN is an element the oracle could not decide. ``lower``/``upper``
    (NaN where not applicable) bound the valid subgradients of elements on a kink, as
    :func:`gradcheck.oracle_gradient` reports them. ``reproduce`` is the line that re-runs what
    produced the value.
    """
    started = time.perf_counter()
    got = as_floats(measured, "measured")
    want = as_floats(expected, "expected")
    if len(got) != len(want):
        raise InvalidArgument(
            f"Got {len(got)} measured value(s) for {name!r} but {len(want)} expected; compare "
            "values of the same shape."
        )
    if not got:
        raise InvalidArgument(f"Got no values to compare for {name!r}; pass at least one.")
    validation.seed(seed)
    estimate = _oracle_side(name, want, errors, lower, upper)
    if dtype is None:
        dtype = measured.dtype if isinstance(measured, torch.Tensor) else torch.float64
    tolerance = resolve_tolerance(dtype, oracle, atol=atol, rtol=rtol)
    shape = tuple(measured.shape) if isinstance(measured, torch.Tensor) else (len(got),)
    dtype_name = str(dtype).removeprefix("torch.")
    identity = Identity(
        name=name,
        dtype=dtype_name,
        device=str(measured.device) if isinstance(measured, torch.Tensor) else "cpu",
        mode="value",
        seed=seed,
        reproduce=reproduce or f"gradcheck.check_values({name!r}, ..., oracle={oracle!r})",
        started=started,
    )
    judged = Judged(
        got,
        estimate,
        judge(got, [0.0] * len(got), estimate, tolerance, estimated=False),
        tolerance,
        oracle,
    )
    return element_result(judged, _elements(name, shape, len(got), dtype_name, oracle), identity)


NO_FINITE_VALUE = "the oracle gave no finite value"
"""Why an element whose expected value is NaN or Inf is not judged."""


def _oracle_side(
    name: str,
    want: list[float],
    errors: Numbers | None,
    lower: Numbers | None,
    upper: Numbers | None,
) -> Estimate:
    """The expected values as an oracle's :class:`Estimate`: error estimates (default 0), kink
    bounds (NaN: none) and the elements with no finite expected value marked undecided."""
    spread = [0.0] * len(want) if errors is None else as_floats(errors, "errors")
    if len(spread) != len(want):
        raise InvalidArgument(
            f"Got {len(spread)} error estimate(s) for {len(want)} expected value(s) of {name!r}."
        )
    negative = [e for e in spread if not e >= 0]
    if negative:
        raise InvalidArgument(
            f"Got errors containing {negative[0]!r} for {name!r}, but an error estimate is a "
            "size: a number >= 0 (0 for an exact value, math.inf for one that is not known)."
        )
    bounds = []
    for label, given in (("lower", lower), ("upper", upper)):
        values = [math.nan] * len(want) if given is None else as_floats(given, label)
        if len(values) != len(want):
            raise InvalidArgument(
                f"Got {len(values)} {label} bound(s) for {len(want)} expected value(s) of {name!r}."
            )
        bounds.append([None if math.isnan(v) else v for v in values])
    return Estimate(
        values=want,
        errors=spread,
        lower=bounds[0],
        upper=bounds[1],
        reasons=[None if math.isfinite(v) else NO_FINITE_VALUE for v in want],
    )


def _elements(name: str, shape: tuple[int, ...], count: int, dtype: str, oracle: str) -> Elements:
    """How check_values names an element: ``name`` or ``name[i, j]``."""

    def where(p: int) -> str:
        if count == 1:
            return name
        return f"{name}[{', '.join(map(str, unravel(p, shape)))}]"

    def headline(kind: str, _p: int | None) -> str:
        return f"{kind}: {name} ({dtype}) against {oracle}"

    return Elements(
        locate=lambda _p: (name, None, None, None),
        where=where,
        headline=headline,
        matched=f"Values match: {name} ({dtype}) against {oracle}",
        noun="values",
        measured_label="measured",
        mismatch="Value mismatch",
    )


@recorded
def check_stated(
    name: str,
    measured: Numbers,
    stated: Sequence[str],
    *,
    dtype: torch.dtype | None = None,
    extra_error: Numbers | None = None,
    reproduce: str = "",
) -> CheckResult:
    """Judge ``measured`` against numbers as a source printed them (``stated``, text).

    Each printed number may be off by half a unit in its last digit; ``extra_error`` widens that
    where the source's own inputs were printed rounded (the propagated rounding).
    """
    half_units = [printed_half_unit(text) for text in stated]
    values = [float(text) for text in stated]
    if extra_error is not None:
        extra = as_floats(extra_error, "extra_error")
        if len(extra) == 1:
            extra = extra * len(half_units)
        half_units = [h + e for h, e in zip(half_units, extra)]
    return check_values(
        name,
        measured,
        values,
        oracle="stated",
        errors=half_units,
        dtype=dtype,
        reproduce=reproduce,
    )
