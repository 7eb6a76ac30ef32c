"""One rank of a distributed check, in its own (spawned) process.

The rank loads the :class:`~gradcheck.distributed.job.Job` from the work folder, joins the
process group through the parent's TCPStore, builds the model with the parent's initial
weights, wraps it (DDP, or FSDP2's ``fully_shard``), runs the training step on its shard and
writes the gradient it ends with. Along the way it writes what it is doing (its phase) to a
file, so the parent can say what a rank that hangs or dies was doing; an exception is written
with its traceback. stdout and stderr go to the rank's log file.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from gradcheck.distributed.job import Job, StepContext, micro_batches

JOB_FILE = "job.pt"


def paths(folder: Path, rank: int) -> dict[str, Path]:
    """The files rank ``rank`` writes in ``folder``: phase, ready, gradients, error, log."""
    return {
        kind: folder / f"rank{rank}.{kind}"
        for kind in ("phase", "ready", "gradients", "error", "log")
    }


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def save_atomically(value: Any, path: Path) -> None:
    """``torch.save`` to ``path`` so that a reader sees no file or the whole one."""
    partial = path.with_name(path.name + ".partial")
    torch.save(value, partial)
    os.replace(partial, path)


class _Phases:
    """What the rank is doing, written to its phase file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.current = "starting"

    def __call__(self, text: str) -> None:
        self.current = text
        write_atomically(self.path, text.encode())


def main(folder: str, rank: int, port: int) -> None:
    """The spawned process's entry point: run the job, write the gradients or the error (its
    first line what the rank was doing, then the traceback)."""
    files = paths(Path(folder), rank)
    log = open(files["log"], "ab", buffering=0)  # noqa: SIM115 - open for the process's life
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    phase = _Phases(files["phase"])
    try:
        phase("loading the job (make_model, loss, step and comm_hook are unpickled here)")
        job: Job = torch.load(Path(folder) / JOB_FILE, weights_only=False)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // job.world_size))
        gradients = _run(job, rank, port, phase, files["ready"])
        phase("writing the gradients")
        save_atomically(gradients, files["gradients"])
        phase("done")
    except BaseException:  # every failure goes to the parent, traceback and all
        text = f"{phase.current}\n{traceback.format_exc()}"
        write_atomically(files["error"], text.encode())
        os._exit(1)
    os._exit(0)


def _run(job: Job, rank: int, port: int, phase: _Phases, ready: Path) -> dict[str, Any]:
    import torch.distributed as dist

    timeout = datetime.timedelta(seconds=job.timeout_s)
    phase(f"joining the process group ({job.backend}, rendezvous at 127.0.0.1:{port})")
    store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=timeout)
    dist.init_process_group(
        job.backend, store=store, rank=rank, world_size=job.world_size, timeout=timeout
    )
    write_atomically(ready, repr(time.time()).encode())
    try:
        device = torch.device(f"cuda:{rank}" if job.backend == "nccl" else "cpu")
        phase("building the model (make_model) and loading the initial weights")
        torch.manual_seed(job.seed)
        model = job.make_model()
        model.load_state_dict(job.state)
        model.to(device).train(job.mode == "train")
        phase(f"wrapping the model ({job.strategy})")
        wrapped = _wrapped(job, model, device)
        inputs = micro_batches(
            [t.to(device) for t in job.inputs], job.world_size, job.accumulation_steps, rank
        )
        targets = micro_batches(
            [t.to(device) for t in job.targets], job.world_size, job.accumulation_steps, rank
        )
        for micro in range(job.accumulation_steps):
            last = micro == job.accumulation_steps - 1
            of = f"micro-batch {micro + 1} of {job.accumulation_steps}"
            context = StepContext(
                rank, job.world_size, micro, job.accumulation_steps, job.reduction, job.loss
            )
            with _synchronised(job, wrapped, last):
                phase(f"forward and loss of {of} (step)")
                loss = job.step(wrapped, inputs[micro], targets[micro], context)
                sync = "with the gradient all-reduce" if last else "under no_sync"
                phase(f"backward of {of} ({sync})")
                loss.backward()
        phase("collecting the gradients")
        return _gradients(job, model)
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def _wrapped(job: Job, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if job.strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard  # type: ignore[attr-defined]

        fully_shard(model)
        return model
    ids = [device.index] if device.type == "cuda" else None
    wrapped = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=ids, find_unused_parameters=job.find_unused_parameters
    )
    if job.comm_hook is not None:
        wrapped.register_comm_hook(job.comm_state, job.comm_hook)
    return wrapped


def _synchronised(job: Job, wrapped: torch.nn.Module, last: bool) -> Any:
    """DDP's ``no_sync()`` for all but the last micro-batch; FSDP2 turns gradient sync off."""
    if job.strategy == "fsdp":
        wrapped.set_requires_gradient_sync(last)  # type: ignore[operator]
        return contextlib.nullcontext()
    return contextlib.nullcontext() if last else wrapped.no_sync()  # type: ignore[operator]


def _gradients(job: Job, model: torch.nn.Module) -> dict[str, Any]:
    """Every checked parameter's gradient (None where it has none), full (FSDP2's shards are
    gathered), on the CPU."""
    parameters = dict(model.named_parameters())
    gradients: dict[str, Any] = {}
    for name in job.names:
        grad = parameters[name].grad
        if grad is not None and hasattr(grad, "full_tensor"):
            grad = grad.full_tensor()
        gradients[name] = None if grad is None else grad.detach().cpu().clone()
    return gradients
