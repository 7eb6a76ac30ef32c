"""gradcheck: verify PyTorch autograd gradients against independent oracles.

>>> import torch, gradcheck
>>> x = torch.randn(5, dtype=torch.float64)
>>> gradcheck.check_function(torch.sin, x).passed
True
"""

from gradcheck import semantics
from gradcheck.check import (
    OracleGradient,
    assert_gradients_correct,
    check_function,
    oracle_gradient,
)
from gradcheck.errors import (
    BackwardError,
    GradcheckError,
    GradientMismatch,
    InconclusiveCheck,
    InvalidArgument,
    SemanticsViolation,
)
from gradcheck.model import check_device_parity, check_module
from gradcheck.model_results import DeviceParityResult, ModuleCheckResult, ModuleRow, ParityRow
from gradcheck.oracles import FiniteDifference, Forward, Oracle, Symbolic
from gradcheck.results import (
    CheckResult,
    Claim,
    ElementReport,
    Note,
    ScenarioResult,
    SemanticsResult,
)
from gradcheck.semantics import (
    check_accumulation,
    check_retain_graph,
    check_tracking_off,
    check_vector_backward,
    check_zero_grad,
    explain_backward_failure,
)
from gradcheck.tolerances import TOLERANCES, Tolerance
from gradcheck.values import check_values

__version__ = "0.1.0"

__all__ = [
    "TOLERANCES",
    "BackwardError",
    "CheckResult",
    "Claim",
    "DeviceParityResult",
    "ElementReport",
    "FiniteDifference",
    "Forward",
    "GradcheckError",
    "GradientMismatch",
    "InconclusiveCheck",
    "InvalidArgument",
    "ModuleCheckResult",
    "ModuleRow",
    "Note",
    "Oracle",
    "OracleGradient",
    "ParityRow",
    "ScenarioResult",
    "SemanticsResult",
    "SemanticsViolation",
    "Symbolic",
    "Tolerance",
    "assert_gradients_correct",
    "check_accumulation",
    "check_device_parity",
    "check_function",
    "check_module",
    "check_retain_graph",
    "check_tracking_off",
    "check_values",
    "check_vector_backward",
    "check_zero_grad",
    "explain_backward_failure",
    "oracle_gradient",
    "semantics",
]
