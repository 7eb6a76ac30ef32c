"""check_function's arguments: several tensors passed positionally, cotangents that leave an
output out, and a multi-output failure that names its output."""

from __future__ import annotations

import pytest
import torch

import gradcheck
from gradcheck.errors import InvalidArgument


def _tensors():  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(3, generator=generator, dtype=torch.float64) for _ in range(3)]


def test_several_positional_inputs_say_to_pass_a_tuple() -> None:
    x, w, b = _tensors()
    with pytest.raises(InvalidArgument, match=r"check_function\(fn, \(x, w, b\)\)") as error:
        gradcheck.check_function(lambda x, w, b: x * w + b, x, w, b)
    assert isinstance(error.value, TypeError) and "tuple" in str(error.value)
    with pytest.raises(InvalidArgument, match="tuple"):
        gradcheck.assert_gradients_correct(lambda x, w: x * w, x, w)


def test_a_none_cotangent_leaves_that_output_out() -> None:
    x, _, _ = _tensors()

    def two(x):  # type: ignore[no-untyped-def]
        return x.sin(), WrongSquare.apply(x)

    v = torch.ones(3, dtype=torch.float64)
    result = gradcheck.check_function(two, x, cotangents=(v, None))
    assert result.passed, result.message
    notes = [note for note in result.left_out if note.where == "output[1]"]
    assert notes and "cotangents" in notes[0].reason
    with pytest.raises(InvalidArgument, match="every output"):
        gradcheck.check_function(two, x, cotangents=(None, None))


class WrongSquare(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(x)
        return x**2

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        (x,) = ctx.saved_tensors
        return grad * 3 * x  # should be 2 * x


def test_a_multi_output_failure_names_the_output() -> None:
    x, _, _ = _tensors()
    result = gradcheck.check_function(lambda x: (x.sin(), WrongSquare.apply(x), x.cos()), x)
    assert result.status == "failed"
    assert "output[1]" in result.message, result.message
    assert result.worst is not None and result.worst.output == "output[1]"
    assert "output[0]" not in result.message.split("output[1]")[0].splitlines()[-1]
