"""OpInfo records with known answers for the ``gradcheck ops`` tests (``check_ops`` loads them
by ``database="ops_planted:NAME"``, in worker processes too).

``planted.sin`` is right; ``planted.sin_bug``'s backward is off by a relative 1e-6 (inside
torch.autograd.gradcheck's rtol of 1e-3, far outside gradcheck's float64 tolerance);
``planted.skipped`` carries torch's own skip of test_fn_grad; ``planted.slow`` computes in
Python (0.2 CPU-s per call: a soft timeout); ``planted.hang`` blocks the alarm signals and sleeps
(a C call that never returns: only the hard limit stops it); ``planted.crash`` kills its own
process.
"""

from __future__ import annotations

import os
import signal
import time
import unittest
from typing import Any

import torch

from gradcheck.ops.database import torch_test_imports

with torch_test_imports():
    from torch.testing._internal.common_dtype import floating_and_complex_types, floating_types
    from torch.testing._internal.opinfo.core import DecorateInfo, OpInfo, SampleInput


class SinBug(torch.autograd.Function):
    """sin with a backward off by a relative 1e-6."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.sin(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.cos(x) * (1 + 1e-6)


def _samples(op_info: Any, device: Any, dtype: torch.dtype, requires_grad: bool, **kwargs: Any):
    for size in (5, 3):
        x = torch.linspace(-1.0, 1.2, size, dtype=dtype, device=device)
        yield SampleInput(x.requires_grad_(requires_grad))


def _slow(x: torch.Tensor) -> torch.Tensor:
    # Busy for 0.2 CPU-s: the budget counts CPU time, which sleeping does not use.
    started = time.process_time()
    while time.process_time() - started < 0.2:
        pass
    return x * 2


def _hang(x: torch.Tensor) -> torch.Tensor:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGPROF})
    time.sleep(120)
    return x


def _crash(x: torch.Tensor) -> torch.Tensor:
    os.kill(os.getpid(), signal.SIGKILL)
    return x


def _record(name: str, op: Any, **kwargs: Any) -> Any:
    return OpInfo(
        name,
        op=op,
        dtypes=floating_types(),
        sample_inputs_func=_samples,
        supports_out=False,
        **kwargs,
    )


SKIP = DecorateInfo(unittest.skip("planted skip"), "TestBwdGradients", "test_fn_grad")

RIGHT_AND_WRONG = [
    _record("planted.sin", torch.sin),
    _record("planted.sin_bug", SinBug.apply),
    _record("planted.skipped", torch.sin, skips=(SKIP,)),
]
SLOW = [_record("planted.slow", _slow)]
STUCK = [_record("planted.hang", _hang), _record("planted.crash", _crash)]

HOSTILE_NAME = "planted.<script>alert(1)</script>"
"""An op name that must show as text in the report."""

HOSTILE = [*RIGHT_AND_WRONG, _record(HOSTILE_NAME, SinBug.apply)]


class Cube(torch.autograd.Function):
    """x**3 with a differentiable backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return 3 * grad * x * x


class SubtleCube(Cube):
    """The right first derivative, whose own derivative is off by a relative 1e-6: the extra
    term is zero in value but not in derivative (inside gradgradcheck's rtol of 1e-3)."""

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return 3 * grad * x * x + 1e-6 * 3 * grad * (x * x - x.detach() * x.detach())


class DetachedCube(Cube):
    """The right first derivative; the backward detaches x, so its derivative is zero."""

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return 3 * grad * x.detach() ** 2


SECOND_ORDER = [
    _record("planted.cube", Cube.apply),
    _record("planted.cube_subtle", SubtleCube.apply),
    _record("planted.cube_detached", DetachedCube.apply),
]


class MissingConj(torch.autograd.Function):
    """z * (1 + 2j) whose backward forgets the conj."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor) -> torch.Tensor:
        return z * (1 + 2j)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad * (1 + 2j)


def _complex_samples(op_info: Any, device: Any, dtype: torch.dtype, requires_grad: bool, **kw):
    for size in (5, 3):
        real = torch.linspace(-1.0, 1.2, size, dtype=torch.float64, device=device)
        z = torch.complex(real, real.flip(0) * 0.5).to(dtype)
        yield SampleInput(z.requires_grad_(requires_grad))


COMPLEX = [
    OpInfo(
        name,
        op=op,
        dtypes=floating_and_complex_types(),
        sample_inputs_func=_complex_samples,
        supports_out=False,
    )
    for name, op in (
        ("planted.complex_mul", lambda z: z * (1 + 2j)),
        ("planted.no_conj", MissingConj.apply),
    )
]
