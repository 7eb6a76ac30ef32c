"""gradcheck: verify PyTorch autograd gradients against independent oracles.

>>> import torch, gradcheck
>>> x = torch.randn(5, dtype=torch.float64)
>>> gradcheck.check_function(torch.sin, x).passed
True
"""

from gradcheck.check import assert_gradients_correct, check_function
from gradcheck.errors import GradcheckError, GradientMismatch, InconclusiveCheck, InvalidArgument
from gradcheck.oracles import FiniteDifference, Forward, Oracle, Symbolic
from gradcheck.results import CheckResult, ElementReport, Note
from gradcheck.tolerances import TOLERANCES, Tolerance

__version__ = "0.1.0"

__all__ = [
    "TOLERANCES",
    "CheckResult",
    "ElementReport",
    "FiniteDifference",
    "Forward",
    "GradcheckError",
    "GradientMismatch",
    "InconclusiveCheck",
    "InvalidArgument",
    "Note",
    "Oracle",
    "Symbolic",
    "Tolerance",
    "assert_gradients_correct",
    "check_function",
]
