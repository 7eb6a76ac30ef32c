"""check_module at scale (issue 16): modules that are not functions of their inputs, backward
passes that are not reentrant, inputs that must not be differentiated, PyTorch's frozen global
flags, rows in the order forward first uses each tensor, and modules that compute in float32
inside."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from gradcheck import InvalidArgument, check_module
from gradcheck.model.rows import judge_direction
from gradcheck.oracles.directional import DirectionalEstimate
from gradcheck.status import FAILED, PASSED
from gradcheck.tolerances import resolve_tolerance


def _linear(seed: int, fan_in: int, fan_out: int) -> nn.Linear:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Linear(fan_in, fan_out)


def _x(*shape: int, seed: int = 4) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# -- (a) a module that is not a function of its inputs is never passed ---------------------------


class NumpyNoise(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = _linear(0, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) + torch.from_numpy(np.random.randn(3))


class PythonRandomScale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = _linear(0, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * random.random()


class CallCounter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = _linear(0, 4, 3)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.lin(x) * (1 + 1e-3 * self.calls)


class ShapeShifter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = _linear(0, 4, 3)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.lin(x)[: 1 + self.calls % 2]


@pytest.mark.parametrize("module", [NumpyNoise, PythonRandomScale, CallCounter, ShapeShifter])
def test_a_module_that_is_not_a_function_of_its_inputs_is_never_passed(module):
    np_state, py_state = np.random.get_state(), random.getstate()
    result = check_module(module(), _x(2, 4))
    assert result.status == "incomplete" and not result.passed, result.table()
    assert not any(row.passed or row.status == FAILED for row in result.rows)
    assert "the module is not a function of its inputs" in result.message
    assert all("not a function of its inputs" in row.note for row in result.rows)
    # The caller's numpy and Python generators are left as they were, even though forward drew.
    assert random.getstate() == py_state
    after = np.random.get_state()
    assert np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]


def test_an_estimate_whose_error_is_as_large_as_its_value_decides_nothing():
    tolerance = resolve_tolerance(torch.float64, "finite_difference")
    wide = DirectionalEstimate(value=1.0e7, error=9.0e6, rule="central", step=1e-9, evaluations=8)
    judged = judge_direction(1.0, 0.0, wide, tolerance)
    assert judged.status == "inconclusive" and not judged.decided
    assert "error estimate" in (judged.verdict.reason or "")
    broken = DirectionalEstimate(
        value=2.0, error=math.nan, rule="central", step=1e-6, evaluations=8
    )
    assert judge_direction(2.0, 0.0, broken, tolerance).status == "inconclusive"
    # A derivative of about 0 with an error inside the tolerance still decides its direction.
    flat = DirectionalEstimate(value=1e-14, error=1e-13, rule="central", step=1e-6, evaluations=8)
    assert judge_direction(0.0, 0.0, flat, tolerance).status == PASSED


def test_a_jump_at_the_point_is_not_passed():
    class SignOfWeight(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sign(self.w) + self.w * x

    result = check_module(SignOfWeight(), _x(3))
    assert result.row("input").passed
    assert result.row("w").status != PASSED, result.table()


# -- (b) a backward that is not reentrant fails, beyond nondet_tol -------------------------------


class _DriftingBackward(torch.autograd.Function):
    calls = 0

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return x * 2

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        _DriftingBackward.calls += 1
        return grad * (2 + 1e-12 * _DriftingBackward.calls)


class Drifting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = _linear(0, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _DriftingBackward.apply(self.lin(x))


def test_a_nondeterministic_backward_fails_unless_nondet_tol_allows_it():
    result = check_module(Drifting(), _x(2, 4))
    assert result.status == FAILED, result.message
    assert "backward is not reentrant" in result.message
    assert "nondet_tol=0.0" in result.message
    assert {row.name for row in result.failed_rows} == {"input", "lin.weight", "lin.bias"}
    tolerant = check_module(Drifting(), _x(2, 4), nondet_tol=1e-9)
    assert tolerant.passed, tolerant.message


@pytest.mark.parametrize("bad", [-1.0, math.nan, "0", True])
def test_a_bad_nondet_tol_is_an_error(bad):
    with pytest.raises(InvalidArgument, match="nondet_tol"):
        check_module(Drifting(), _x(2, 4), nondet_tol=bad)


# -- (c) which inputs are differentiated ---------------------------------------------------------


def _margin_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    return _x(4, 3), torch.sign(_x(4, 3, seed=5))


def test_inputs_that_require_grad_are_the_ones_differentiated():
    x, target = _margin_inputs()
    result = check_module(nn.SoftMarginLoss(), (x.requires_grad_(), target))
    assert result.passed, result.message
    assert [row.name for row in result.rows] == ["input[0]"]


def test_without_requires_grad_an_input_torch_cannot_differentiate_is_left_out():
    result = check_module(nn.SoftMarginLoss(), _margin_inputs())
    assert result.passed, result.message
    assert [row.name for row in result.rows] == ["input[0]"]


def test_a_module_that_raises_at_a_perturbed_point_gives_an_undecided_row_not_a_traceback():
    probabilities = torch.sigmoid(_x(4, 3))
    target = (_x(4, 3, seed=5) > 0).double()  # exact 0/1: any step leaves BCELoss's domain
    result = check_module(nn.BCELoss(), (probabilities, target))
    assert result.row("input[0]").passed
    row = result.row("input[1]")
    assert row.status == "inconclusive" and "RuntimeError" in row.note, row
    chosen = check_module(nn.BCELoss(), (probabilities, target), inputs_to_check=(0,))
    assert chosen.passed and [row.name for row in chosen.rows] == ["input[0]"]


def test_an_exception_at_the_point_itself_says_what_gradcheck_was_doing():
    class Picky(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            if x.dtype == torch.float64:
                raise ValueError("float64 is not supported here")
            return super().forward(x)

    with pytest.raises(
        InvalidArgument,
        match=r"ValueError: float64 is not supported here while check_module was evaluating",
    ):
        check_module(Picky(4, 3), _x(2, 4))


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"inputs_to_check": (2,)}, "inputs_to_check=(2,)"),
        ({"inputs_to_check": ("0",)}, "inputs_to_check=('0',)"),
        ({"inputs_to_check": 0}, "inputs_to_check=0"),
        ({"inputs_to_check": (1,), "include_inputs": False}, "include_inputs=False"),
    ],
)
def test_bad_inputs_to_check_name_the_problem(kwargs, fragment):
    indices = torch.tensor([0, 1])

    class Pick(nn.Linear):
        def forward(self, x, index):  # type: ignore[override]
            return super().forward(x)[index]

    with pytest.raises(InvalidArgument, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        check_module(Pick(4, 3), (_x(2, 4), indices), **kwargs)
    with pytest.raises(InvalidArgument, match=r"inputs_to_check=\(1,\).*floating-point"):
        check_module(Pick(4, 3), (_x(2, 4), indices), inputs_to_check=(1,))


# -- (d) PyTorch's frozen global flags -----------------------------------------------------------


def test_the_check_runs_after_torch_freezes_its_global_flags():
    pytest.importorskip("expecttest")
    script = textwrap.dedent(
        """
        import torch
        import torch.testing._internal.common_utils  # freezes torch.backends' global flags
        from gradcheck import check_module

        assert torch.backends.flags_frozen()
        before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        x = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        result = check_module(torch.nn.Linear(6, 3), x)
        assert result.passed, result.message
        after = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        assert before == after, (before, after)
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]


# -- (e) rows in the order forward first uses each tensor ----------------------------------------


class _WrongInputGradScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):  # type: ignore[override]
        ctx.save_for_backward(x, scale)
        return x * scale

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, scale = ctx.saved_tensors
        return grad * scale * (1 + 1e-4), (grad * x).sum(0)


class LayerScaleLast(nn.Module):
    """A directly owned parameter (LayerScale's ``scale``) used after both children, and a child's
    weight used through the functional API only."""

    def __init__(self, wrong: bool = False) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, 3))
        self.first = _linear(1, 4, 5)
        self.second = _linear(2, 5, 3)
        self.wrong = wrong

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(nn.functional.linear(x, self.first.weight, self.first.bias))
        h = self.second(h)
        return _WrongInputGradScale.apply(h, self.scale) if self.wrong else h * self.scale


def test_rows_follow_where_forward_first_uses_each_tensor():
    result = check_module(LayerScaleLast(), _x(2, 4))
    assert result.passed, result.message
    assert [row.name for row in result.rows] == [
        "input",
        "first.weight",
        "first.bias",
        "second.weight",
        "second.bias",
        "scale",
    ]


def test_the_likely_culprit_names_the_right_neighbour_of_a_directly_owned_parameter():
    result = check_module(LayerScaleLast(wrong=True), _x(2, 4))
    assert [row.name for row in result.failed_rows] == [
        "input",
        "first.weight",
        "first.bias",
        "second.weight",
        "second.bias",
    ]
    assert result.likely_culprit == "second.bias"
    assert "(scale)" in result.message


# -- (f) modules that compute in float32 inside --------------------------------------------------


class _ScaledWeightGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, error):  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.error = error
        return x @ weight.T

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        return grad @ weight, (grad.T @ x) * (1 + ctx.error), None


class Float32Inside(nn.Module):
    """Casts to float32 for its first layer (or, ``bottleneck``, only its activations)."""

    def __init__(self, seed: int, bottleneck: bool = False, error: float = 0.0) -> None:
        super().__init__()
        self.first = _linear(seed, 6, 8)
        self.second = _linear(seed + 1, 8, 3)
        self.bottleneck = bottleneck
        self.error = error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bottleneck:
            h = torch.tanh(self.first(x)).float().double()
        else:
            w = self.first.weight.float()
            h = _ScaledWeightGrad.apply(x.float(), w, self.error) + self.first.bias.float()
            h = torch.tanh(h).double()
        return self.second(h)


@pytest.mark.parametrize("bottleneck", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_module_computing_in_float32_inside_is_never_failed(seed, bottleneck):
    result = check_module(Float32Inside(seed, bottleneck), _x(5, 6, seed=seed), seed=seed)
    assert not result.failed_rows, result.table()
    assert result.row("second.weight").passed


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_1e_3_bug_in_a_module_computing_in_float32_still_fails(seed):
    result = check_module(Float32Inside(seed, error=1e-3), _x(5, 6, seed=seed), seed=seed)
    assert result.status == FAILED, result.table()
    assert result.likely_culprit == "first.weight", result.table()


def test_a_lazy_module_is_initialized_on_the_copy_only():
    torch.manual_seed(0)
    module = nn.LazyLinear(3).double()
    x = torch.randn(2, 4, dtype=torch.float64)
    result = check_module(module, (x,))
    assert result.passed, result.table()
    assert [row.name for row in result.rows] == ["input", "weight", "bias"]
    assert torch.nn.parameter.is_lazy(module.weight)  # the caller's module is untouched


class _TenPercentSin(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * x.cos() * 1.1


class SmallDrift(nn.Module):
    """A call counter whose drift (1e-10 per call) is small next to the loss."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = _linear(0, 4, 3)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return _TenPercentSin.apply(self.lin(x)) + 1e-10 * self.calls


def test_a_small_drift_between_calls_never_hides_a_wrong_gradient():
    # The impurity allowance was 1e-6 of the loss's scale: the drift passed for noise, the
    # noise widened the error estimate, and a 10% wrong input gradient "passed".
    x = torch.randn(2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    result = check_module(SmallDrift(), (x,))
    assert not any(row.passed for row in result.rows), result.table()
    assert "not a function of its inputs" in result.message
