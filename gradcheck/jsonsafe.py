"""One JSON-safety rule for every result and report: non-finite floats become strings.

``json.dumps`` writes ``NaN`` and ``Infinity``, which are not JSON; results and reports write
``"nan"``, ``"inf"`` and ``"-inf"`` instead and read them back with :func:`from_json_float`.
Standard library only: the pytest plugin imports it without torch.
"""

from __future__ import annotations

import math
from typing import Any

NON_FINITE = ("nan", "inf", "-inf")

REPR_CHARS = 120
"""How much of the repr of a value JSON cannot hold is kept."""


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON, recursively: non-finite floats become ``"nan"``, ``"inf"`` or
    ``"-inf"``, tuples become lists, dict keys become strings, and anything else JSON cannot
    hold (a parametrized workload object, a dtype) becomes its repr, cut to
    :data:`REPR_CHARS` characters."""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    text = repr(value)
    return text if len(text) <= REPR_CHARS else text[: REPR_CHARS - 1] + "…"


def from_json_float(value: Any) -> Any:
    """The float a :func:`json_safe` string stands for; any other value unchanged."""
    if isinstance(value, str) and value in NON_FINITE:
        return float(value)
    return value
