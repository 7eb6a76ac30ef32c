"""gradcheck: verify PyTorch autograd gradients against independent oracles.

>>> import torch, gradcheck
>>> x = torch.randn(5, dtype=torch.float64)
>>> gradcheck.check_function(torch.sin, x).passed
True

The names below are imported on first use (PEP 562), so ``import gradcheck`` and the pytest
plugin cost nothing until a check runs: torch and sympy load with the first public name used.
"""

import importlib as _importlib
import typing as _typing

__version__ = "0.1.0"

_HOMES = {
    "semantics": "gradcheck.semantics",
    "OracleGradient": "gradcheck.oracle_gradients",
    "assert_gradients_correct": "gradcheck.check",
    "check_function": "gradcheck.check",
    "oracle_gradient": "gradcheck.oracle_gradients",
    "BackwardError": "gradcheck.errors",
    "GradcheckError": "gradcheck.errors",
    "GradientMismatch": "gradcheck.errors",
    "InconclusiveCheck": "gradcheck.errors",
    "InvalidArgument": "gradcheck.errors",
    "SemanticsViolation": "gradcheck.errors",
    "check_device_parity": "gradcheck.model",
    "check_module": "gradcheck.model",
    "DeviceParityResult": "gradcheck.model_results",
    "ModuleCheckResult": "gradcheck.model_results",
    "ModuleRow": "gradcheck.model_results",
    "ParityRow": "gradcheck.model_results",
    "FiniteDifference": "gradcheck.oracles",
    "Forward": "gradcheck.oracles",
    "Oracle": "gradcheck.oracles",
    "Symbolic": "gradcheck.oracles",
    "CheckResult": "gradcheck.results",
    "Claim": "gradcheck.results",
    "ElementReport": "gradcheck.results",
    "Note": "gradcheck.results",
    "ScenarioResult": "gradcheck.results",
    "SemanticsResult": "gradcheck.results",
    "check_accumulation": "gradcheck.semantics",
    "check_retain_graph": "gradcheck.semantics",
    "check_tracking_off": "gradcheck.semantics",
    "check_vector_backward": "gradcheck.semantics",
    "check_zero_grad": "gradcheck.semantics",
    "explain_backward_failure": "gradcheck.semantics",
    "TOLERANCES": "gradcheck.tolerances",
    "Tolerance": "gradcheck.tolerances",
    "check_values": "gradcheck.values",
    "OpsResult": "gradcheck.ops.results",
    "check_ops": "gradcheck.ops.check",
    "ReferenceCheckResult": "gradcheck.reference_results",
    "ReferenceRow": "gradcheck.reference_results",
    "check_against_reference": "gradcheck.reference",
    "check_compiled": "gradcheck.reference",
    "DistributedCheckResult": "gradcheck.distributed_results",
    "RankProblem": "gradcheck.distributed_results",
    "StepContext": "gradcheck.distributed.job",
    "check_distributed": "gradcheck.distributed.check",
}
"""Where each public name lives: the lazy-import table. ``__all__`` below is the one literal
list of public names; ``tests/test_public_api.py`` fails when the two, or the eager imports
for type checkers at the end of this file, disagree."""

__all__ = [
    "TOLERANCES",
    "BackwardError",
    "CheckResult",
    "Claim",
    "DeviceParityResult",
    "DistributedCheckResult",
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
    "OpsResult",
    "Oracle",
    "OracleGradient",
    "ParityRow",
    "RankProblem",
    "ReferenceCheckResult",
    "ReferenceRow",
    "ScenarioResult",
    "SemanticsResult",
    "SemanticsViolation",
    "StepContext",
    "Symbolic",
    "Tolerance",
    "assert_gradients_correct",
    "check_accumulation",
    "check_against_reference",
    "check_compiled",
    "check_device_parity",
    "check_distributed",
    "check_function",
    "check_module",
    "check_ops",
    "check_retain_graph",
    "check_tracking_off",
    "check_values",
    "check_vector_backward",
    "check_zero_grad",
    "explain_backward_failure",
    "oracle_gradient",
    "semantics",
]


def __getattr__(name: str) -> _typing.Any:
    """Import a public name from its module on first use and cache it here."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'gradcheck' has no attribute {name!r}")
    module = _importlib.import_module(home)
    value = module if name == "semantics" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names (and ``__version__``), not the helpers this module uses."""
    return sorted([*__all__, "__version__"])


if _typing.TYPE_CHECKING:  # the eager imports, for type checkers and editors
    from gradcheck import semantics
    from gradcheck.check import assert_gradients_correct, check_function
    from gradcheck.distributed.check import check_distributed
    from gradcheck.distributed.job import StepContext
    from gradcheck.distributed_results import DistributedCheckResult, RankProblem
    from gradcheck.errors import (
        BackwardError,
        GradcheckError,
        GradientMismatch,
        InconclusiveCheck,
        InvalidArgument,
        SemanticsViolation,
    )
    from gradcheck.model import check_device_parity, check_module
    from gradcheck.model_results import (
        DeviceParityResult,
        ModuleCheckResult,
        ModuleRow,
        ParityRow,
    )
    from gradcheck.ops.check import check_ops
    from gradcheck.ops.results import OpsResult
    from gradcheck.oracle_gradients import OracleGradient, oracle_gradient
    from gradcheck.oracles import FiniteDifference, Forward, Oracle, Symbolic
    from gradcheck.reference import check_against_reference, check_compiled
    from gradcheck.reference_results import ReferenceCheckResult, ReferenceRow
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
