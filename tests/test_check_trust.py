"""check_function on the inputs that fooled or broke it (issue 16): each test failed before.

Outputs autograd does not differentiate, overflowing oracle values, impure functions, a
nondeterministic backward, an fn that closes over float32 weights and an oracle that fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradcheck

F64 = torch.float64


def _points(n: int = 6, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, generator=generator, dtype=F64) * 2 - 1


def test_outputs_that_do_not_require_grad_are_left_out_not_judged():
    # native_layer_norm returns (out, mean, rstd); mean and rstd do not require grad. Contracting
    # them with a cotangent on the oracle's side only was a false alarm.
    def layer_norm(x: torch.Tensor):
        return torch.native_layer_norm(x.view(2, 3), [3], None, None, 1e-5)

    result = gradcheck.check_function(layer_norm, _points())
    assert result.status == "passed", result.message
    assert [note.where for note in result.left_out] == ["output[1]", "output[2]"]
    assert all("does not require grad" in note.reason for note in result.left_out)


def test_a_left_out_output_does_not_hide_a_wrong_gradient_in_the_others():
    class Wrong(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            index = (x * 3).detach()
            ctx.mark_non_differentiable(index)
            return x * x, index

        @staticmethod
        def backward(ctx, grad, _unused):
            (x,) = ctx.saved_tensors
            return 2 * x * grad * (1 + 1e-6)

    result = gradcheck.check_function(Wrong.apply, _points())
    assert result.status == "failed", result.message
    assert [note.where for note in result.left_out] == ["output[1]"]


@pytest.mark.parametrize(
    ("point", "expr"),
    [(710.0, "exp(a)"), (1e200, "a**3")],
    ids=["exp-overflow", "cube-overflow"],
)
def test_an_overflowing_symbolic_derivative_decides_nothing(point: float, expr: str):
    # The exact derivative overflows float64: the tolerance rtol*inf accepted any autograd
    # value, so a plainly wrong gradient (2, where exp(710) belongs) passed.
    result = gradcheck.check_function(
        lambda a: 2.0 * a, torch.tensor([point], dtype=F64), oracle="sympy", expr=expr
    )
    assert result.status == "inconclusive", result.message
    assert "not finite" in result.inconclusive[0].reason


def test_an_error_estimate_that_dwarfs_its_value_decides_nothing():
    from gradcheck.judge import judge_element
    from gradcheck.tolerances import resolve_tolerance

    tolerance = resolve_tolerance(F64, "finite_difference")
    # The oracle knows only 10 +/- 1.8e7: autograd's 1e6 would pass on the error alone.
    assert judge_element(1e6, tolerance, oracle=10.0, error=1.8e7, scale=10.0).status == (
        "inconclusive"
    )
    # -24 +/- 14 (a staircase read along a random direction): the judge's interval, +/- 4
    # errors, reaches 0 and fixes no sign, so autograd's 0 is not "passed" by it.
    wide = judge_element(0.0, tolerance, oracle=-23.93, error=14.1, scale=23.93)
    assert wide.status == "inconclusive" and "does not fix" in wide.reason
    # About 0 to within 1e-12, in a gradient of size 1: a real answer.
    decided = judge_element(3e-13, tolerance, oracle=1e-17, error=1e-12, scale=1.0)
    assert decided.status == "passed"


def test_numpy_randomness_inside_fn_is_never_a_pass():
    # gradcheck's seeded torch RNG does not fix numpy's: the oracle saw noise and a 124% error
    # once passed inside its error estimate.
    rng = np.random.default_rng(0)

    def noisy(x: torch.Tensor) -> torch.Tensor:
        return x * (1.0 + float(rng.random()))

    result = gradcheck.check_function(noisy, _points())
    assert result.status == "inconclusive", result.message
    assert "not a function of its inputs" in result.message


def test_a_call_counter_inside_fn_is_never_a_pass():
    calls = {"n": 0}

    def counting(x: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return torch.sin(x) * (1.0 + 1e-3 * calls["n"])

    result = gradcheck.check_function(counting, _points())
    assert result.status == "inconclusive", result.message
    assert "differ by up to" in result.inconclusive[0].reason


def test_an_output_whose_shape_changes_between_calls_is_never_a_pass():
    calls = {"n": 0}

    def growing(x: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return torch.sin(x).repeat(calls["n"] % 2 + 1)

    result = gradcheck.check_function(growing, _points())
    assert result.status == "inconclusive", result.message
    assert "outputs of shapes" in result.inconclusive[0].reason


class _NoisyBackward(torch.autograd.Function):
    """sin whose backward adds relative noise of 1e-9 (unseeded: backward runs outside the
    check's frozen RNG, like a GPU kernel's atomic adds)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sin(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        noise = 1 + 1e-9 * torch.rand(x.shape, dtype=x.dtype)
        return torch.cos(x) * grad * noise


def test_a_nondeterministic_backward_fails_as_torch_reentrancy_check_does():
    result = gradcheck.check_function(_NoisyBackward.apply, _points())
    assert result.status == "failed", result.message
    assert "backward is not deterministic" in result.message
    with pytest.raises(gradcheck.GradientMismatch, match="not deterministic"):
        result.raise_for_failure()


def test_nondet_tol_accepts_the_expected_nondeterminism():
    result = gradcheck.check_function(_NoisyBackward.apply, _points(), nondet_tol=1e-6)
    assert result.status == "passed", result.message


def test_nondet_tol_is_validated():
    with pytest.raises(gradcheck.InvalidArgument, match=r"Got nondet_tol=-1"):
        gradcheck.check_function(torch.sin, _points(), nondet_tol=-1)


def test_an_fn_closing_over_float32_weights_is_checked_in_its_own_dtype():
    # The oracle called fn on float64 copies: 'mat1 and mat2 must have the same dtype' came
    # from deep inside. Now the oracle evaluates fn where it can run, and says so.
    torch.manual_seed(0)
    linear = torch.nn.Linear(3, 4)
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(1))
    result = gradcheck.check_function(linear, x)
    assert result.status == "passed", result.message
    assert "cannot run on float64 copies" in result.left_out[-1].reason


def test_an_fn_that_runs_nowhere_but_autograd_gets_an_error_that_says_what_gradcheck_did():
    def autograd_only(x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            raise ValueError("only under autograd")
        return torch.sin(x)

    with pytest.raises(gradcheck.InvalidArgument, match=r"float64 copies of the inputs.*only"):
        gradcheck.check_function(autograd_only, _points())


def test_an_oracle_that_fails_is_an_inconclusive_result_not_a_traceback():
    calls = {"n": 0}

    def breaks_later(x: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] > 4:
            raise RuntimeError("the kernel ran out of something")
        return torch.sin(x)

    result = gradcheck.check_function(breaks_later, _points())
    assert result.status == "inconclusive", result.message
    assert "RuntimeError" in result.message and "ran out of something" in result.message


def test_a_printed_zero_still_decides_a_stated_value():
    # A printed '0.0000' carries a half unit of 5e-5, larger than its value: a bound, not an
    # estimate, so 0.3 against it must fail (the uninformative-error rule is for estimates).
    from gradcheck.values import check_stated

    assert check_stated("g", [0.3, 2.0], ["0.0000", "2.0000"]).status == "failed"


def test_an_infinite_autograd_value_fails_rather_than_being_inconclusive():
    class InfiniteBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return torch.sin(x)

        @staticmethod
        def backward(ctx, grad):
            return grad * torch.inf

    assert gradcheck.check_function(InfiniteBackward.apply, _points()).status == "failed"
    big = torch.linspace(-1, 1, 300, dtype=F64)
    assert gradcheck.check_function(InfiniteBackward.apply, big).status == "failed"


def test_a_conjugated_complex_output_is_judged_as_its_real_view():
    # torch.fft.ifft returns a lazily conjugated tensor: view_as_real raised on it.
    x = _points(12).reshape(3, 4)
    result = gradcheck.check_function(torch.fft.ifft, x)
    assert result.passed, result.message
    assert "'fft_ifft'" in result.message  # the wrapper keeps fn's name


@pytest.mark.parametrize("layout", ["coo", "csr", "csc"])
def test_a_sparse_input_is_checked_through_its_stored_values(layout):
    # OpInfo's sparse.mm.reduce samples were refused ("only dense tensors are supported").
    dense = _points(20).reshape(4, 5).relu()
    sparse = {"coo": dense.to_sparse, "csr": dense.to_sparse_csr, "csc": dense.to_sparse_csc}
    weight = _points(15, seed=1).reshape(5, 3)
    fn = lambda s, w: (s.to_dense() if s.layout == torch.sparse_csc else s) @ w  # noqa: E731
    result = gradcheck.check_function(fn, (sparse[layout](), weight))
    assert result.passed, result.message
    assert "stored values are checked" in result.left_out[0].reason
    assert result.left_out[0].where == "s"


def test_a_wrong_gradient_through_a_sparse_input_fails():
    from gradcheck.scenarios import planted

    dense = _points(20).reshape(4, 5).relu()
    weight = _points(15, seed=1).reshape(5, 3)
    result = gradcheck.check_function(
        lambda s: planted.SinOffByOnePpm.apply(torch.sparse.mm(s, weight)), dense.to_sparse_csr()
    )
    assert result.status == "failed", result.message


def test_a_view_into_a_larger_storage_keeps_its_layout():
    # OpInfo's as_strided.partial_views: as_strided reads the input's storage at an offset, and
    # gradcheck's compact copies of the input made it raise "out of bounds for storage".
    base = _points(20)
    view = base[5:15]
    fn = lambda t: torch.as_strided(t, (2, 2), (1, 2), storage_offset=10)  # noqa: E731
    result = gradcheck.check_function(fn, view)
    assert result.passed, result.message
    assert torch.equal(base, _points(20))  # the caller's storage is not written


def test_a_constant_view_into_a_larger_storage_keeps_its_layout_too():
    # A non-differentiated argument that fn reads through as_strided is copied with its storage.
    base = torch.arange(20)  # integers: a constant argument, not differentiated
    offsets = base[5:15]
    x = _points(4).reshape(2, 2)

    def fn(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        return x * torch.as_strided(table, (2, 2), (1, 2), storage_offset=10)

    result = gradcheck.check_function(fn, (x, offsets))
    assert result.passed, result.message


def test_a_self_overlapping_view_is_perturbed_element_by_element():
    # as_strided((3, 3), (1, 1)) shares cells between elements: writing the perturbed values
    # into one copy of its storage let one element's perturbation overwrite another's.
    x = _points(10).as_strided((3, 3), (1, 1))
    result = gradcheck.check_function(torch.sin, (x,))
    assert result.passed, result.message


def test_a_sparse_input_that_is_not_differentiated_gets_no_note():
    dense = _points(20).reshape(4, 5).relu()
    weight = _points(15, seed=1).reshape(5, 3).requires_grad_()
    result = gradcheck.check_function(
        lambda s, w: torch.sparse.mm(s, w).sin(), (dense.to_sparse(), weight)
    )
    assert result.passed, result.message
    assert not any("stored values" in note.reason for note in result.left_out)
