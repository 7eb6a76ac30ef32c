"""What every throughput benchmark shares: the devices to run on, a step timer that splits forward
from backward (synchronising CUDA around each timed region), and the facts each benchmark records
in its ``extra_info`` (and so in ``--benchmark-json`` and the HTML report).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch

DEVICES = (
    "cpu",
    pytest.param("cuda", marks=pytest.mark.cuda),
)
"""Parametrize ``device`` with these: the CUDA cases skip with the reason where none is visible."""

DTYPES = (torch.float32, torch.float64)


def require(device: str) -> None:
    """Skip (with the reason) when ``device`` is CUDA and there is none."""
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available on this machine (torch.cuda.is_available() is False)")


def synchronize(device: str) -> None:
    """Wait for the device's queued kernels, so a timer stops after the work, not the launch."""
    if device == "cuda":
        torch.cuda.synchronize()


class StepTimer:
    """Times each step's forward and backward apart, with the device synchronised before and
    after each region. ``step()`` runs the forward, which returns the backward to call;
    ``prepare`` (untimed) runs before each step, for example to set the gradients to None."""

    def __init__(
        self,
        forward: Callable[[], Callable[[], None]],
        device: str,
        prepare: Callable[[], None] | None = None,
    ) -> None:
        self.forward = forward
        self.device = device
        self.prepare = prepare
        self.forward_s: list[float] = []
        self.backward_s: list[float] = []

    def step(self) -> None:
        """One timed step: forward, then backward (and whatever the step does after it)."""
        if self.prepare is not None:
            self.prepare()
        synchronize(self.device)
        started = time.perf_counter()
        backward = self.forward()
        synchronize(self.device)
        middle = time.perf_counter()
        backward()
        synchronize(self.device)
        self.forward_s.append(middle - started)
        self.backward_s.append(time.perf_counter() - middle)

    def record(
        self,
        benchmark: Any,
        *,
        samples: int,
        warmup: int = 0,
        rate: str = "samples_per_s",
        **facts: Any,
    ) -> None:
        """Write the split into ``benchmark.extra_info``: medians of forward and backward (the
        first ``warmup`` steps left out), their ratio, ``rate`` (samples per second of forward
        plus backward) and ``facts``."""
        forward = statistics.median(self.forward_s[warmup:] or self.forward_s)
        backward = statistics.median(self.backward_s[warmup:] or self.backward_s)
        benchmark.extra_info.update(
            facts,
            device=self.device,
            threads=torch.get_num_threads(),
            forward_s=forward,
            backward_s=backward,
            backward_over_forward=backward / forward,
        )
        benchmark.extra_info[rate] = samples / (forward + backward)


def dtype_name(dtype: torch.dtype) -> str:
    """``float32`` for ``torch.float32``."""
    return str(dtype).removeprefix("torch.")
