"""The start of the test modules the plugin tests plant with pytester: a ``WrongSin`` whose
backward is 1.001 times too large, the points ``X`` it is checked at, and three tests: the
planted bug caught (the test passes), ``torch.sin`` passing, and the bug raised (it fails)."""

PLANTED_PRELUDE = """
import pytest
import torch
from hypothesis import given, settings, strategies as st

from gradcheck import check_function


class WrongSin(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * x.cos() * 1.001


X = torch.linspace(0.1, 1.0, 4, dtype=torch.float64)


def test_planted_bug_is_caught():
    assert not check_function(WrongSin.apply, X, name="wrong_sin").passed


def test_sin_is_right():
    assert check_function(torch.sin, X, name="sin").passed


def test_fails_on_purpose():
    check_function(WrongSin.apply, X, name="wrong_sin").raise_for_failure()
"""
