"""``gradcheck ops``: :func:`check_ops` runs gradcheck's ``check_function`` and
``torch.autograd.gradcheck`` over torch's OpInfo database and compares them sample by sample.

- :mod:`~gradcheck.ops.database`: loading op_db (lazily; needs expecttest), selection, torch's
  skips and expected failures of ``test_fn_grad``;
- :mod:`~gradcheck.ops.samples`: one SampleInput as a function of its differentiable tensors;
- :mod:`~gradcheck.ops.sides`: the three checks of a sample, each within its time budget;
- :mod:`~gradcheck.ops.worker`: an op's samples as events, and the worker process;
- :mod:`~gradcheck.ops.pool`: worker processes and the hard limit, or this process;
- :mod:`~gradcheck.ops.collect`: events to rows; :mod:`~gradcheck.ops.classify`: classes,
  known disagreements, the summary (no torch); :mod:`~gradcheck.ops.results`: frozen records;
- :mod:`~gradcheck.ops.check`: :func:`check_ops`; :mod:`~gradcheck.ops.command`: the command.
"""

from gradcheck.ops.check import check_ops
from gradcheck.ops.results import OpRow, OpsResult, Outcome, SkippedOp

__all__ = ["OpRow", "OpsResult", "Outcome", "SkippedOp", "check_ops"]
