"""The independent judges of autograd, each a small class behind a string name.

``"finite_difference"`` (:class:`FiniteDifference`), ``"sympy"`` (:class:`Symbolic`) and
``"forward"`` (:class:`Forward`). :func:`resolve_oracle` turns a name or an instance into an
oracle and rejects anything else with the list of names.
"""

from __future__ import annotations

import difflib

from gradcheck.errors import InvalidArgument
from gradcheck.oracles.base import Estimate, Oracle, Probes, Problem
from gradcheck.oracles.finite_diff import FiniteDifference
from gradcheck.oracles.forward import Forward
from gradcheck.oracles.symbolic import Symbolic

ORACLE_NAMES = ("finite_difference", "sympy", "forward")

__all__ = [
    "ORACLE_NAMES",
    "Estimate",
    "FiniteDifference",
    "Forward",
    "Oracle",
    "Probes",
    "Problem",
    "Symbolic",
    "resolve_oracle",
]


def resolve_oracle(oracle: object, expr: object = None) -> Oracle:
    """The oracle for ``oracle`` (a name or an :class:`Oracle`), given the caller's ``expr``."""
    if isinstance(oracle, Oracle):
        if expr is not None:
            raise InvalidArgument(
                f"Got expr={expr!r} together with the oracle object {oracle.describe()}. "
                "Pass the formula to gradcheck.Symbolic(expr) instead, or use oracle='sympy'."
            )
        return oracle
    if not isinstance(oracle, str) or oracle not in ORACLE_NAMES:
        close = difflib.get_close_matches(str(oracle), ORACLE_NAMES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InvalidArgument(
            f"Got oracle={oracle!r}, but oracle must be one of "
            f"{', '.join(map(repr, ORACLE_NAMES))} or a gradcheck oracle object.{hint}"
        )
    if oracle == "sympy":
        return Symbolic(expr)  # type: ignore[arg-type]
    if expr is not None:
        raise InvalidArgument(
            f"Got expr={expr!r} with oracle={oracle!r}, but expr is only used by the sympy "
            "oracle. Pass oracle='sympy' to check against the formula, or drop expr."
        )
    return FiniteDifference() if oracle == "finite_difference" else Forward()
