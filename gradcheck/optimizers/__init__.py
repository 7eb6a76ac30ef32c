"""Reference updates of ``torch.optim.SGD`` and ``torch.optim.Adam``, and the check that torch
follows them.

- :mod:`gradcheck.optimizers.reference`: the documented updates (``sgd_reference``,
  ``adam_reference``; ``AdamW`` is Adam with ``decoupled_weight_decay=True``), written from the
  optimizers' documentation in plain float64 and never calling ``torch.optim``, and the
  :class:`Trajectory` that carries, next to each value, a bound on how far an implementation in a
  lower dtype may sit from it through rounding alone.
- :mod:`gradcheck.optimizers.steps`: :func:`check_optimizer_steps` runs a real torch optimizer on
  seeded parameters and a seeded loss and returns one :class:`~gradcheck.results.Claim` per step;
  :func:`record_steps` and :func:`judge_steps` are its two halves, for callers (a model) that
  bring their own parameters and loss.

The constants are re-exported for reading; to change one (in a test), patch the submodule that
defines it, e.g. ``gradcheck.optimizers.steps.LOSS_SCALES``.
"""

from gradcheck.optimizers.reference import (
    SUPPORTED_DTYPES,
    Trajectory,
    adam_reference,
    adam_trajectory,
    sgd_reference,
    sgd_trajectory,
)
from gradcheck.optimizers.steps import (
    CHUNK_ELEMENTS,
    FULL_CHECK_MAX_ELEMENTS,
    IMPLEMENTATION_KEYS,
    LOSS_SCALES,
    MEASURED_VALUES_MAX,
    Recording,
    check_optimizer_steps,
    judge_steps,
    record_steps,
)

__all__ = [
    "CHUNK_ELEMENTS",
    "FULL_CHECK_MAX_ELEMENTS",
    "IMPLEMENTATION_KEYS",
    "LOSS_SCALES",
    "MEASURED_VALUES_MAX",
    "SUPPORTED_DTYPES",
    "Recording",
    "Trajectory",
    "adam_reference",
    "adam_trajectory",
    "check_optimizer_steps",
    "judge_steps",
    "record_steps",
    "sgd_reference",
    "sgd_trajectory",
]
