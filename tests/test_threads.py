"""Checks run from several threads at once leave the caller's RNG alone and give the serial
results."""

from __future__ import annotations

import threading

import torch

import gradcheck


def _noisy(x: torch.Tensor) -> torch.Tensor:
    """Draws random numbers inside (a dropout), so the frozen RNG matters."""
    return (x * torch.rand(x.shape, dtype=x.dtype)).sin()


def _check(seed: int):  # type: ignore[no-untyped-def]
    x = torch.linspace(-1, 1, 6, dtype=torch.float64).requires_grad_()
    result = gradcheck.check_function(_noisy, x, seed=seed)
    return result.status, result.checked, result.max_abs_error


def test_four_threads_leave_the_rng_and_give_the_serial_results() -> None:
    torch.manual_seed(1234)
    seeds = [0, 1, 2, 3] * 3
    serial = [_check(seed) for seed in seeds]
    before = torch.get_rng_state()
    results: dict[int, object] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work(first: int) -> None:
        try:
            barrier.wait()
            for i in range(first, len(seeds), 4):
                results[i] = _check(seeds[i])
        except BaseException as error:  # pragma: no cover - shown by the assert below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert torch.equal(torch.get_rng_state(), before)
    assert [results[i] for i in range(len(seeds))] == serial
