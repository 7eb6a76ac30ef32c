"""``torch.autograd.gradcheck(fast_mode=True)`` run per parameter tensor of ResNet18, with a time
budget per tensor, as the peer that :func:`gradcheck.check_module` is compared with.

On a false failure (a finite perturbation crossing a ReLU kink) gradcheck rebuilds its message in
slow mode, two forward passes per element of the tensor: hours for a 2.4M-element conv weight.
The peer therefore runs in a spawned worker process; a tensor that exceeds the budget is killed
and its time extrapolated as the measured fast-path time plus ``2 * numel`` forward passes (the
slow-mode numerical Jacobian; its analytical side is one backward for a scalar loss).
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class PeerTiming:
    """One tensor: gradcheck's verdict (None when killed), seconds measured and extrapolated."""

    name: str
    numel: int
    verdict: bool | None
    seconds: float
    extrapolated: float


def _setup(seed: int):  # type: ignore[no-untyped-def]
    import torch
    import torchvision
    from torch.func import functional_call

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = torchvision.models.resnet18().double().eval()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed + 1))
    images = images.double()
    projection = torch.randn(2, 1000, generator=torch.Generator().manual_seed(seed)).double()
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}

    def loss_with(name: str):  # type: ignore[no-untyped-def]
        def loss(value):  # type: ignore[no-untyped-def]
            out = functional_call(model, ({**params, name: value}, buffers), (images,))
            return (out * projection).sum()

        return loss

    return torch, params, loss_with


def _worker(requests, replies, seed: int) -> None:  # type: ignore[no-untyped-def]
    torch, params, loss_with = _setup(seed)
    with torch.no_grad():
        loss_with("fc.bias")(params["fc.bias"])
        start = time.perf_counter()
        for _ in range(3):
            loss_with("fc.bias")(params["fc.bias"])
    replies.put(("forward", (time.perf_counter() - start) / 3))
    while True:
        name = requests.get()
        if name is None:
            return
        value = params[name].clone().requires_grad_()
        start = time.perf_counter()
        verdict = torch.autograd.gradcheck(
            loss_with(name), (value,), fast_mode=True, raise_exception=False
        )
        replies.put((name, bool(verdict), time.perf_counter() - start))


def time_fast_gradcheck(
    names: list[tuple[str, int]], *, budget_s: float = 20.0, seed: int = 0
) -> tuple[list[PeerTiming], float]:
    """Run the peer on each ``(name, numel)``; returns the timings and one forward's seconds."""
    context = multiprocessing.get_context("spawn")
    timings: list[PeerTiming] = []
    forward_s = 0.0
    pending = list(names)
    while pending:
        requests, replies = context.Queue(), context.Queue()
        worker = context.Process(target=_worker, args=(requests, replies, seed), daemon=True)
        worker.start()
        _, forward_s = replies.get(timeout=300)
        while pending:
            name, numel = pending[0]
            requests.put(name)
            try:
                _, verdict, seconds = replies.get(timeout=budget_s)
            except queue.Empty:
                worker.kill()
                worker.join()
                pending.pop(0)
                fast = _mean_fast_path(timings)
                timings.append(
                    PeerTiming(name, numel, None, budget_s, fast + 2 * numel * forward_s)
                )
                break
            pending.pop(0)
            timings.append(PeerTiming(name, numel, verdict, seconds, seconds))
        else:
            requests.put(None)
            worker.join(timeout=30)
    return timings, forward_s


def _mean_fast_path(timings: list[PeerTiming]) -> float:
    passed = [t.seconds for t in timings if t.verdict]
    return sum(passed) / len(passed) if passed else 0.0
