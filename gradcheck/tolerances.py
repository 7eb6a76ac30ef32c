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

from dataclasses import asdict, dataclass
from typing import Any

import torch

from gradcheck import validation
from gradcheck.errors import InvalidArgument


@dataclass(frozen=True)
class Tolerance:
    """How far autograd may sit from an oracle: ``atol + rtol*|oracle| + error_factor*error``."""

    atol: float
    rtol: float
    error_factor: float

    def allowed(self, oracle_value: Any, error_estimate: Any) -> Any:
        """The largest accepted ``|autograd - oracle|``: for one element (floats) or element
        by element (tensors of oracle values and error estimates)."""
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


def resolve_tolerance(
    dtype: torch.dtype, oracle: str, *, atol: float | None = None, rtol: float | None = None
) -> Tolerance:
    """Merge the caller's ``atol``/``rtol`` (when not None) over the table row for the pair."""
    atol = validation.non_negative_or_none("atol", atol)
    rtol = validation.non_negative_or_none("rtol", rtol)
    default = TOLERANCES.get((dtype, oracle))
    oracles = sorted({o for _, o in TOLERANCES})
    if oracle not in oracles:
        raise InvalidArgument(
            f"Got oracle={oracle!r}, but gradcheck has tolerances only for the oracles "
            f"{', '.join(map(repr, oracles))}. Pass one of them."
        )
    if default is None:
        known = sorted({str(d).removeprefix("torch.") for d, o in TOLERANCES if o == oracle})
        raise InvalidArgument(
            f"Got dtype={dtype}, but gradcheck has no tolerances for it with oracle "
            f"{oracle!r}. Supported dtypes: {', '.join(known)}."
        )
    return Tolerance(
        atol=default.atol if atol is None else atol,
        rtol=default.rtol if rtol is None else rtol,
        error_factor=default.error_factor,
    )


# -- the other numbers that decide a pass ------------------------------------------------------

AUTOGRAD_ROUNDING_FACTOR = 4.0
"""Autograd's side of a comparison carries rounding too: a contraction ``sum g_i u_i`` (a
random direction, a module row) is off by up to ``4 * eps(dtype) * sum |g_i u_i|``, which is
added to the oracle's error estimate."""

FORWARD_ROUNDING_FACTOR = 8.0
"""The forward-mode oracle's error estimate: its contraction ``sum v_i t_i`` of the cotangent
with the jvp's tangent is off by up to this many ``eps64 * sum |v_i t_i|``."""

PARITY_TOLERANCES: dict[torch.dtype, float] = {
    torch.float64: 1e-9,
    torch.float32: 1e-4,
    torch.float16: 1e-2,
    torch.bfloat16: 5e-2,
}
"""Normwise relative tolerance ``||g_device - g_cpu64|| / ||g_cpu64||`` per device dtype.

float64 devices differ from the CPU only in summation order (cuDNN and cuBLAS pick other
algorithms), which moves a ResNet18 gradient by about 1e-13 normwise; 1e-9 leaves room for
ill-conditioned layers and still catches any real bug. float32 (with TF32 off) rounds at 6e-8
per operation, and a ResNet18 gradient on the CPU in float32 sits about 1e-6 from float64; 1e-4
allows deep accumulation. A kernel bug moves gradients by far more than either.
"""

PARITY_BASELINE_FACTOR = 4.0
"""Below float64 a device may also sit up to this many times as far from float64 as the CPU in
the same dtype does: float32 rounding alone can reach 1e-2 (ResNet18 in train mode at batch 2),
and that is the dtype's error, not the device's."""

REFERENCE_MULTIPLIER = 3.0
"""check_against_reference's gate: an implementation's error against the float64 golden value
may be at most this many times the reference's own error in the same dtype (or the dtype's
floor, :func:`reference_floor`, where that is larger). torch._dynamo.utils.same judges compiled
results against ``fp64_ref`` the same way; 3 leaves room for a correct kernel that accumulates
in another order (a blocked matmul, a tree reduction), whose error is a small multiple of the
eager one, and still catches a kernel that accumulates in the low dtype, which is several times
worse."""

REFERENCE_FLOOR_ROUNDINGS = 1.0
"""The floor of the gate, in units of the dtype's unit roundoff (``eps/2``): an output rounded
once to its dtype is off by up to one unit roundoff, so a kernel is never failed for that when
the reference happens to be exact (an identity, a copy, a sum of representable values)."""

REFERENCE_FLOAT64_FLOOR = 1e-11
"""The floor in float64, where the reference in the check's dtype *is* the golden value: its
error is 0 and says nothing of what a correct reordering costs. Inductor's reordered sums move a
float64 ResNet18 gradient by at most 3e-15 normwise and 2e-14 elementwise (measured on the CPU);
3e-11 allowed is three orders above that and four and a half below a 1e-6 bug."""

REFERENCE_NO_CORRECT_DIGIT = 10**-0.5
"""A measure of the reference's own error in the low dtype that reaches this (0.32) has no
correct digit: an error ``e`` leaves ``-log10(e)`` correct decimal digits, and below half a
digit none rounds right. Normwise, the row is inconclusive,
never judged: any implementation is within a multiple of an error that large. Elementwise (some
element of the reference is that far off), the elementwise measure is not judged and the
normwise one decides, with a note. bfloat16 gradients of a random-weight ResNet18 sit 0.1-0.19
from float64 normwise: about one correct digit, judged."""


def reference_floor(dtype: torch.dtype) -> float:
    """The smallest error the reference gate allows in ``dtype``:
    :data:`REFERENCE_FLOOR_ROUNDINGS` unit roundoffs, and :data:`REFERENCE_FLOAT64_FLOOR` in
    float64."""
    if dtype == torch.float64:
        return REFERENCE_FLOAT64_FLOOR
    return REFERENCE_FLOOR_ROUNDINGS * torch.finfo(dtype).eps / 2


BATCH_AGREEMENT_RTOL = 1e-10
"""check_module evaluates many points in one vmapped batch; the batch must reproduce a plain
evaluation at the center to this relative precision (of the rounding scale), or batching is
switched off for the whole check (randomness or batch-dependent layers)."""

WIDE_PRODUCT_RTOL = 1e-12
"""check_module runs a batched float64 convolution with a large weight as one matrix product
(``gradcheck.model.wide_conv``); its first such product in a check must reproduce torch's own
convolution to this normwise relative precision (a reordered sum differs by about 1e-16), or
torch's convolution is used for the rest of the check."""

MEASURED_NOISE_SAFETY = 2.0
"""check_module measures the rounding noise of one evaluation (residuals from the tangent line
at steps of 1e-12) and uses this many times the largest residual."""

UNINFORMATIVE_ERROR_SHARE = 1e-6
"""An oracle interval ``value +/- error_factor * error`` that reaches 0 (it does not fix the
derivative's sign) still decides an element when its half-width is below this share of the
gradient's size (the oracle's largest |value| in the check, and at least 1, the unit scale the
atol column assumes): a derivative of about 0 known to +/- 3e-10 is a real answer; 10 known to
+/- 1.8e7 is not, and neither is -24 +/- 56 (a staircase read along a random direction)."""

EXCESS_FLOOR = 1e-300
"""The smallest tolerance a ratio ``|diff| / allowed`` divides by (so an exact 0 tolerance
ranks by the size of the difference rather than dividing by zero)."""


def parity_tolerance(dtype: torch.dtype) -> float:
    """The normwise relative tolerance of :data:`PARITY_TOLERANCES` for ``dtype``."""
    allowed = PARITY_TOLERANCES.get(dtype)
    if allowed is None:
        raise InvalidArgument(
            f"Got dtype={dtype}, but device parity supports "
            f"{', '.join(str(d) for d in PARITY_TOLERANCES)}."
        )
    return allowed


def parity_limit(dtype_allowed: float, baseline_error: float | None) -> float:
    """The normwise limit for one tensor: the dtype's tolerance, or below float64 (when the
    CPU's own error in that dtype, ``baseline_error``, is known) up to
    :data:`PARITY_BASELINE_FACTOR` times that error."""
    if baseline_error is None:
        return dtype_allowed
    return max(dtype_allowed, PARITY_BASELINE_FACTOR * baseline_error)


# -- the finite-difference core's rounding floors and safety factors --
# Numbers that decide a finite-difference verdict, used by the shared core
# (gradcheck/oracles/noise.py, kinks.py, richardson.py) and its two engines: FiniteDifference
# (gradcheck/oracles/finite_diff.py, element-wise, behind check_function) and
# directional_derivative (gradcheck/oracles/directional.py, whole models). Where the two engines
# disagree each keeps its own constant (FD_* and DIRECTIONAL_*), so their results are what they
# were before the core was shared. "rounding" below is a level's rounding error of a one-step
# quotient, ``per_evaluation * eps * magnitude / h``.

FD_ROUNDING_PER_EVALUATION = 2.0
"""FiniteDifference: rounding of one evaluation of ``L``, in units of ``eps * magnitude``, where
magnitude sums ``|v * out|`` over the three evaluations (plus, center, minus) of every output the
probe has moved, each output weighted by its own dtype's eps in units of float64's (a float32
output counts 2**29 times its size); measured noise replaces it where larger
(:data:`FD_MEASURED_NOISE_SAFETY`)."""

DIRECTIONAL_ROUNDING_PER_EVALUATION = 1.0
"""directional_derivative: rounding of one evaluation of ``phi``, in units of
``eps * magnitude`` (the caller's magnitude already carries model.py's measured noise and its
safety factor)."""

GAP_NOISE_ROUNDING_FACTOR = 4.0
"""Both engines: a one-sided gap ``|F - B|`` counts as real only above this many times the level's
rounding (plus the relative floor below)."""

FD_GAP_RELATIVE_FLOOR = 1e-9
"""FiniteDifference: the relative part of the gap noise floor, times ``max(|F|, |B|)``."""

DIRECTIONAL_GAP_RELATIVE_FLOOR = 1e-12
"""directional_derivative: the relative part of the gap noise floor, times ``max(|F|, |B|)``."""

FD_CONVERGED_RELATIVE = 1e-11
"""FiniteDifference stops halving once the best Richardson error is within this relative size of
the value plus :data:`FD_CONVERGED_ROUNDING_FACTOR` times the last step's rounding."""

FD_CONVERGED_ROUNDING_FACTOR = 2.0
"""See :data:`FD_CONVERGED_RELATIVE`."""

FD_UNCONVERGED_RELATIVE = 1e-4
"""FiniteDifference calls a smooth probe unconverged (inconclusive) when its best error exceeds
this relative size of the value and also :data:`FD_UNCONVERGED_ROUNDING_FACTOR` times the last
step's rounding."""

FD_UNCONVERGED_ROUNDING_FACTOR = 100.0
"""See :data:`FD_UNCONVERGED_RELATIVE`."""

DIRECTIONAL_ACCEPT_ROUNDING_FACTOR = 4.0
"""directional_derivative stops once its best candidate's error is within this many times the
level's rounding plus :data:`DIRECTIONAL_ACCEPT_RELATIVE` times the value."""

DIRECTIONAL_ACCEPT_RELATIVE = 1e-12
"""See :data:`DIRECTIONAL_ACCEPT_ROUNDING_FACTOR`."""

DIRECTIONAL_CLEAN_MARGIN = 8.0
"""directional_derivative: a gap that vanishes to rounding at the smaller step proves the switch
point was passed only if the larger step's gap stood this many times above the smaller step's
noise (several switch points at the point itself can hide under rounding at a tiny step)."""

FD_MEASURED_NOISE_SAFETY = 4.0
"""FiniteDifference measures each output element's noise (a divided difference on each side of
the input, :func:`gradcheck.oracles.noise.measured_noise`: one sample per side, so a
single measurement can read low) and counts this many times it per evaluation, where it exceeds
the assumed ``FD_ROUNDING_PER_EVALUATION * eps(dtype) * |v * out|``."""

FD_FINEST_ROUNDING_FACTOR = 4.0
"""FiniteDifference trusts its best Richardson entry only when the finest central quotient lies
within the entry's error plus this many times the finest level's rounding plus
:data:`FD_FINEST_TRUNCATION_FACTOR` times the finest quotient's last change."""

FD_FINEST_TRUNCATION_FACTOR = 2.0
"""See :data:`FD_FINEST_ROUNDING_FACTOR` (a smooth function's finest quotient sits about a third
of its last change from the limit)."""

FD_STAIR_ROUNDING_RELATIVE = 2.0**-20
"""FiniteDifference reads stairs in ``L`` (a one-sided difference exactly 0 at some steps, not at
others) of at most this fraction of ``|L|`` (8 to 16 float32 units) as rounding of a lower
precision inside fn, which then counts as noise of half a stair per evaluation; coarser stairs
are the function's own (``round(x, decimals=3)``, ``floor``), whose derivative is 0. float16 or
bfloat16 inside fn makes stairs as coarse as ``round``'s and is not told apart."""

FD_NOISE_SIDES_RATIO = 100.0
"""FiniteDifference measures the noise on each side of the input separately; where one side's
exceeds the other's by more than this factor, and also :data:`FD_STAIR_ROUNDING_RELATIVE` of
``|out|``, something other than rounding (a stair or switch point of the function within reach
of the measurement) spoiled it, and the smaller counts."""

# The measured-noise safety factor is MEASURED_NOISE_SAFETY above; gradcheck.oracles.noise's
# measured_rounding_magnitude uses it.

# -- check_module's trust rules (issue 16) --
# Used by gradcheck/model/: a module must be a function of its inputs, and a float64 evaluation
# that computes part of itself in a lower precision (``x.float()`` inside forward) is as noisy as
# that precision.

IMPURITY_RELATIVE = 1e-13
"""Two float64 evaluations of the loss at the same point may differ by at most this much of the
loss's rounding scale (``|L| + sum |dL/dout * out|``: about 450 float64 units, room for a
batched and an unbatched evaluation summing in another order), or :data:`IMPURITY_EPS_FACTOR`
times the lowest precision forward computes in, whichever is larger; beyond that the module is
not a function of its inputs and no row is decided. A larger allowance let a call counter's
drift of 1e-10 per call pass for noise: divided by the oracle's 1e-7 step it widened the error
estimate enough to pass a 10% wrong gradient."""

IMPURITY_EPS_FACTOR = 8.0
"""See :data:`IMPURITY_RELATIVE`."""

LOW_PRECISION_FIRST_STEP_EXPONENT = 0.25
"""When forward computes in a precision with ``eps`` above float64's, the oracle's first relative
step is ``eps ** 0.25`` (0.019 for float32) instead of 1e-6, at most
:data:`LOW_PRECISION_MAX_FIRST_STEP`: the step a Richardson-extrapolated central difference needs
to resolve a 1e-3 gradient error above that precision's rounding."""

LOW_PRECISION_MAX_FIRST_STEP = 0.05
"""See :data:`LOW_PRECISION_FIRST_STEP_EXPONENT`."""

LOW_PRECISION_STEP_RATIO = 2.0
"""With a lower precision inside, the oracle's steps shrink by this ratio (not 10), so the
smaller step of the pair an estimate comes from stays large next to that precision's rounding:
on float32-inside test modules a planted 1e-3 weight-gradient error is caught on 16 of 16 seeds
with ratio 2, 15 of 16 with ratio 10, and correct gradients never fail with either."""

LOW_PRECISION_NOISE_STEPS: tuple[float, ...] = (16.0, 64.0, 256.0, 1024.0)
"""The noise of a lower-precision evaluation is measured with fourth differences
``L(2s) + L(-2s) - 4 L(s) - 4 L(-s) + 6 L(0)`` (free of slope and curvature) at ``s`` = these
multiples of that precision's ``eps``: steps that move its rounding, and too small to cross
many switch points."""

LOW_PRECISION_NOISE_NORM = 70.0**0.5
"""A fourth difference of independent evaluation noise ``sigma`` has spread
``sqrt(1 + 1 + 16 + 16 + 36) * sigma``; the measured ``sigma`` is the difference over this."""

WIDE_ESTIMATE_SCALE_SHARE = 1e-6
"""A decided directional estimate decides nothing when ``error_factor * error`` reaches its
value (the interval does not fix the sign), its error exceeds the tolerance, and its error is
above this share of the loss's scale ``|L| + sum |dL/dout * out|``: a jump read as a slope
(``1e7 +/- 9e6``) or noise. Below that share the estimate is a derivative of about 0 known to
rounding (a bias before a train-mode BatchNorm), and it decides its direction."""
