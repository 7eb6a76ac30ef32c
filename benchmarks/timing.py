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
    ``prepare`` and ``finish`` (both untimed) run before and after each step, for example to set
    the gradients to None or to take an optimizer step."""

    def __init__(
        self,
        forward: Callable[[], Callable[[], None]],
        device: str,
        prepare: Callable[[], None] | None = None,
        finish: Callable[[], None] | None = None,
    ) -> None:
        self.forward = forward
        self.device = device
        self.prepare = prepare
        self.finish = finish
        self.forward_s: list[float] = []
        self.backward_s: list[float] = []

    def step(self) -> None:
        """One step: ``prepare``, the timed forward, the timed backward, then ``finish``."""
        if self.prepare is not None:
            self.prepare()
        synchronize(self.device)
        started = time.perf_counter()
        backward = self.forward()
        synchronize(self.device)
        middle = time.perf_counter()
        backward()
        synchronize(self.device)
        ended = time.perf_counter()
        self.forward_s.append(middle - started)
        self.backward_s.append(ended - middle)
        if self.finish is not None:
            self.finish()

    def warm_up(self, steps: int) -> None:
        """Run ``steps`` steps and forget their times (allocator, caches, lazy initialisation)."""
        for _ in range(steps):
            self.step()
        self.forward_s.clear()
        self.backward_s.clear()

    def record(
        self,
        benchmark: Any,
        *,
        samples: int,
        rate_key: str = "samples_per_s",
        **facts: Any,
    ) -> None:
        """Write the split into ``benchmark.extra_info``: medians of the timed steps' forward
        and backward, their ratio, ``rate_key`` (samples per second of forward plus backward)
        and ``facts``."""
        forward = statistics.median(self.forward_s)
        backward = statistics.median(self.backward_s)
        benchmark.extra_info.update(
            facts,
            device=self.device,
            forward_s=forward,
            backward_s=backward,
            backward_over_forward=backward / forward,
        )
        benchmark.extra_info[rate_key] = samples / (forward + backward)


def dtype_name(dtype: torch.dtype) -> str:
    """``float32`` for ``torch.float32``."""
    return str(dtype).removeprefix("torch.")
