"""Whole-model gradient checks: every parameter tensor of a module, attributed row by row.

- :mod:`.settings`: validated settings, the module's inputs, which tensors to check, the global
  state kept as found.
- :mod:`.workspace`: the deep copy a check runs on (float64 and ``dtype`` tensors, the loss,
  batched oracle evaluations).
- :mod:`.observe`: what one float64 evaluation shows: forward order, the lowest precision.
- :mod:`.rows`: one tensor's row, along seeded random directions, through the one judge.
- :mod:`.check`: :func:`check_module` and its result.
- :mod:`.parity`: :func:`check_device_parity` against the CPU float64 reference.
"""

from __future__ import annotations

from gradcheck.model.check import ProgressCallback, check_module
from gradcheck.model.parity import check_device_parity
from gradcheck.model.rows import ZERO_GRADIENT_NOTE
from gradcheck.model.settings import MODES, select_parameters
from gradcheck.tolerances import PARITY_TOLERANCES

__all__ = [
    "MODES",
    "PARITY_TOLERANCES",
    "ZERO_GRADIENT_NOTE",
    "ProgressCallback",
    "check_device_parity",
    "check_module",
    "select_parameters",
]
