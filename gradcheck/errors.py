"""The exceptions gradcheck raises.

Every error the suite raises derives from :class:`GradcheckError`, so a caller can catch the
whole family; each also derives from the builtin that matches its meaning, so code that already
catches ``TypeError`` (bad arguments) or ``AssertionError`` (a failed check, as pytest reports it)
keeps working.
"""

from __future__ import annotations


class GradcheckError(Exception):
    """Base class of every error raised by gradcheck."""


class InvalidArgument(GradcheckError, TypeError):
    """An argument was unusable; the message repeats it as written and says how to fix it."""


class GradientMismatch(GradcheckError, AssertionError):
    """Autograd's gradient disagreed with an independent oracle beyond the tolerance.

    ``result`` holds the full :class:`gradcheck.CheckResult` behind the message.
    """

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class InconclusiveCheck(GradcheckError):
    """The oracle could not decide any element (no convergence, NaN/Inf, unsupported mode).

    This is not a gradient bug: it says the check proved nothing. ``result`` holds the
    :class:`gradcheck.CheckResult` with the reasons.
    """

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class SemanticsViolation(GradcheckError, AssertionError):
    """An autograd semantics rule did not hold (accumulation, zero_grad, no_grad, ...).

    ``result`` holds the :class:`gradcheck.results.SemanticsResult` with every claim.
    """

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class BackwardError(GradcheckError, RuntimeError):
    """``backward()`` failed; the message says why in plain words and how to fix it.

    The original torch error is chained as ``__cause__``.
    """
