"""Shared test helpers: build an oracle problem directly, without going through check_function."""

from __future__ import annotations

from collections.abc import Callable

import torch

from gradcheck.oracles.base import InputSpec, Problem


def elementwise_problem(
    fn: Callable[..., torch.Tensor], x: torch.Tensor, cotangent: torch.Tensor, name: str = "x"
) -> Problem:
    """The problem ``L(x) = <cotangent, fn(x)>`` for one float64 input."""
    return Problem(
        fn=fn,
        arguments=(x.clone(),),
        names=(name,),
        specs=(InputSpec(name, 0, tuple(x.shape), 0),),
        cotangents=(cotangent,),
        seed=0,
    )
