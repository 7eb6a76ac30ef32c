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


def problem_with_constants(
    fn: Callable[..., torch.Tensor],
    x: torch.Tensor,
    constants: tuple[torch.Tensor, ...],
    cotangent: torch.Tensor,
    name: str = "x",
) -> Problem:
    """The problem ``L(x) = <cotangent, fn(x, *constants)>``: only ``x`` (float64) is
    differentiated, the constants (a -inf mask) are passed as they are."""
    return Problem(
        fn=fn,
        arguments=(x.clone(), *(c.clone() for c in constants)),
        names=(name, *(f"c{i}" for i in range(len(constants)))),
        specs=(InputSpec(name, 0, tuple(x.shape), 0),),
        cotangents=(cotangent,),
        seed=0,
    )
