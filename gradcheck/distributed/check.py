"""``check_distributed``: the gradients a distributed training step leaves on every rank,
against the gradients of the whole batch's loss in one process, in float64.

The reference side (:mod:`gradcheck.distributed.reference`) runs here, in the parent; the
ranks (:mod:`gradcheck.distributed.launch`, :mod:`gradcheck.distributed.rank`) run the user's
step on torch.distributed. Each parameter gets a row judged by the reference gate
(:mod:`gradcheck.reference.gate`): the ranks' gradient against float64, with the same step in
one process in the step's dtype as the yardstick (with a compression hook: that step's
gradients sent through the communication dtype). Every rank must end with rank 0's gradient,
bit for bit: replicas that differ drift apart with every optimizer step.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gradcheck import messages, validation
from gradcheck.arguments import function_name, least_precise
from gradcheck.distributed import reference
from gradcheck.distributed.job import MEAN, REDUCTIONS, Job, default_loss, default_step
from gradcheck.distributed.launch import Launch, launch
from gradcheck.distributed_results import DistributedCheckResult, RankProblem
from gradcheck.errors import InvalidArgument
from gradcheck.model.check import check_module
from gradcheck.model.settings import preserved_global_state
from gradcheck.recording import recorded
from gradcheck.reference import gate
from gradcheck.reference import rows as row_records
from gradcheck.reference_results import ReferenceRow
from gradcheck.status import FAILED, PASSED, SKIPPED, overall
from gradcheck.tolerances import REFERENCE_MULTIPLIER, reference_floor

DISTRIBUTED_TIMEOUT_S = 120.0
"""How long the ranks may take, process start included, before they are stopped."""

VERIFY_REFERENCE_MAX_ELEMENTS = 100_000
"""``verify_reference=None`` checks the float64 reference with check_module for models with at
most this many parameter elements (a small MLP: well under a second; ResNet18's 11.7 million
would take far longer than the distributed step)."""

UNIFORM_SCALE_RESIDUAL = 1e-3
"""A failing gradient is "c x the reference's" when it is that multiple to this relative
residual."""

STRATEGIES = ("ddp", "fsdp")
BACKENDS = ("gloo", "nccl")

COMPRESSION_HOOKS = {"fp16_compress_hook": torch.float16, "bf16_compress_hook": torch.bfloat16}
"""torch's compression hooks (ddp_comm_hooks.default_hooks) and the dtype they send in."""


@dataclass(frozen=True)
class _Setup:
    """The validated arguments, the model built here, the batch and the dtypes."""

    job: Job
    model: torch.nn.Module
    batch: reference.Batch
    step_dtype: torch.dtype
    wire: torch.dtype
    multiplier: float
    verify_reference: bool
    labels: dict[str, str]


@recorded
def check_distributed(
    make_model: Callable[[], torch.nn.Module],
    inputs: torch.Tensor | Sequence[torch.Tensor],
    *,
    targets: torch.Tensor | Sequence[torch.Tensor] | None = None,
    world_size: int = 2,
    backend: str = "gloo",
    strategy: str = "ddp",
    accumulation_steps: int = 1,
    loss: Callable[..., torch.Tensor] | None = None,
    reduction: str = MEAN,
    step: Callable[..., torch.Tensor] | None = None,
    comm_hook: Callable[..., Any] | None = None,
    comm_state: Any = None,
    communication_dtype: torch.dtype | None = None,
    mode: str = "eval",
    find_unused_parameters: bool = False,
    multiplier: float = REFERENCE_MULTIPLIER,
    verify_reference: bool | None = None,
    seed: int = 0,
    timeout_s: float = DISTRIBUTED_TIMEOUT_S,
) -> DistributedCheckResult:
    """Run one training step on ``world_size`` ranks and check the gradients they end with.

    ``make_model()`` builds the model (under ``torch.manual_seed(seed)``; every rank then gets
    the weights the parent's build has). ``inputs`` (the model's positional inputs) and
    ``targets`` (the loss's extra arguments) are the global batch, batch-first; rank ``r``
    takes the ``r``-th contiguous ``1/world_size`` of it and cuts that into
    ``accumulation_steps`` micro-batches. For each, the rank runs
    ``step(model, inputs, targets, context) -> loss`` and ``loss.backward()``, under
    ``no_sync()`` for all but the last (FSDP2: gradient sync off); ``context`` is a
    :class:`~gradcheck.distributed.job.StepContext`. The default step is the correct one:
    ``loss(model(*inputs), *targets)`` divided by ``accumulation_steps`` (``reduction="mean"``)
    or multiplied by ``world_size`` (``"sum"``, undoing DDP's average). ``loss`` defaults to
    half the squared output, averaged (or summed) over the batch.

    The reference is the gradient of ``loss(model(*inputs), *targets)`` on the whole batch in
    one process in float64: ``reduction`` says whether ``loss`` is a mean (the default) or a
    sum over the batch. Each parameter's gradient passes when its error against float64 is at
    most ``multiplier`` times that of the same step in one process in the step's dtype (or the
    dtype's floor), normwise and elementwise; with ``comm_hook`` torch's
    ``fp16_compress_hook``/``bf16_compress_hook`` (or ``communication_dtype`` given), the
    yardstick's gradients travel in that dtype too. Every rank must hold rank 0's gradient
    bit for bit. ``verify_reference`` checks the float64 reference with check_module first
    (None: for models up to :data:`VERIFY_REFERENCE_MAX_ELEMENTS` parameter elements).

    ``make_model``, ``loss``, ``step`` and ``comm_hook`` travel to the spawned ranks by
    pickling: they must be module-level callables. ``backend`` is ``"gloo"`` (CPU) or
    ``"nccl"`` (one GPU per rank); ``strategy`` ``"ddp"`` or ``"fsdp"`` (FSDP2's
    ``fully_shard`` on the whole model). A rank that raises, dies or hangs fails the check with
    what it was doing; after ``timeout_s`` seconds every rank still running is stopped. A
    backend or strategy this machine cannot run gives status ``"skipped"`` with the reason.
    Call it from a script under ``if __name__ == "__main__":`` (spawn re-imports the script).

    Returns a :class:`~gradcheck.DistributedCheckResult`; call ``.raise_for_failure()`` to turn
    a failure into :class:`~gradcheck.GradientMismatch`.
    """
    start = time.perf_counter()
    arguments = {
        "world_size": world_size,
        "backend": backend,
        "strategy": strategy,
        "accumulation_steps": accumulation_steps,
        "seed": seed,
    }
    skipped = _unavailable(backend, strategy, world_size)
    setup = _setup(
        make_model,
        inputs,
        targets,
        loss,
        reduction,
        step,
        comm_hook,
        comm_state,
        communication_dtype,
        mode,
        find_unused_parameters,
        multiplier,
        verify_reference,
        timeout_s,
        arguments,
    )
    if skipped:
        unverified = row_records.Verification(SKIPPED, "")
        return _result(setup, SKIPPED, (), (), unverified, None, start, skipped, [])
    with preserved_global_state(torch.device("cpu")):
        golden = reference.whole_batch(setup.model, setup.batch, setup.job.names, torch.float64)
        verified = _verify(setup)
        baseline = _baseline(setup, golden)
    launched = launch(setup.job)
    problems = _rank_problems(launched, setup.job.names)
    finished = [(o.rank, o.gradients) for o in launched.outcomes if o.gradients is not None]
    judged = [
        _row(setup, name, golden[name], baseline[name], finished)
        for name in (setup.job.names if finished else ())
    ]
    rows = tuple(row_records.capped(row, verified) for row, _ in judged)
    scales = [scale for row, scale in judged if row.status == FAILED]
    status = overall([row.status for row in rows])
    if problems or verified.status == FAILED or not rows:
        status = FAILED
    hints = _hints(setup, scales, _unused(finished, golden))
    return _result(setup, status, rows, problems, verified, launched, start, "", hints)


def _setup(
    make_model: Callable[[], torch.nn.Module],
    inputs: torch.Tensor | Sequence[torch.Tensor],
    targets: torch.Tensor | Sequence[torch.Tensor] | None,
    loss: Callable[..., torch.Tensor] | None,
    reduction: str,
    step: Callable[..., torch.Tensor] | None,
    comm_hook: Callable[..., Any] | None,
    comm_state: Any,
    communication_dtype: torch.dtype | None,
    mode: str,
    find_unused_parameters: bool,
    multiplier: float,
    verify_reference: bool | None,
    timeout_s: float,
    arguments: dict[str, Any],
) -> _Setup:
    """Every argument checked before any process starts; the model built here."""
    world_size = validation.positive_int("world_size", arguments["world_size"], "2")
    steps = validation.positive_int("accumulation_steps", arguments["accumulation_steps"], "2")
    seed = validation.seed(arguments["seed"])
    backend = validation.one_of("backend", arguments["backend"], BACKENDS, "gloo: CPU")
    strategy = validation.one_of(
        "strategy", arguments["strategy"], STRATEGIES, "DistributedDataParallel or FSDP2"
    )
    reduction = validation.one_of("reduction", reduction, REDUCTIONS, "the loss over the batch")
    mode = validation.one_of("mode", mode, ("eval", "train"))
    validation.spawnable_callable(make_model, "make_model")
    loss = default_loss(reduction) if loss is None else validation.spawnable_callable(loss, "loss")
    step = default_step if step is None else validation.spawnable_callable(step, "step")
    if comm_hook is not None:
        validation.spawnable_callable(comm_hook, "comm_hook")
        if strategy == "fsdp":
            raise InvalidArgument(
                "Got comm_hook with strategy='fsdp', but communication hooks are DDP's "
                "(register_comm_hook); FSDP2 has none. Pass strategy='ddp' or drop comm_hook."
            )
    if find_unused_parameters and strategy == "fsdp":
        raise InvalidArgument(
            "Got find_unused_parameters=True with strategy='fsdp', but it is a DDP option. "
            "Pass strategy='ddp' or drop it."
        )
    multiplier = gate.validated_multiplier(multiplier)
    timeout = math.nan if isinstance(timeout_s, bool) else timeout_s
    if not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
        raise InvalidArgument(
            f"Got timeout_s={validation.short_repr(timeout_s)}, but timeout_s must be a "
            f"positive number of seconds. Pass, for example, timeout_s={DISTRIBUTED_TIMEOUT_S:g}."
        )
    batch_inputs = _batch("inputs", inputs, world_size * steps, world_size, steps)
    batch_targets = (
        () if targets is None else _batch("targets", targets, world_size * steps, world_size, steps)
    )
    if batch_targets and batch_targets[0].shape[0] != batch_inputs[0].shape[0]:
        raise InvalidArgument(
            f"Got inputs with a batch of {batch_inputs[0].shape[0]} and targets with "
            f"{batch_targets[0].shape[0]}, but each sample needs its target. Pass as many "
            "targets as inputs along dim 0."
        )
    model = _built(make_model, seed)
    names = tuple(name for name, p in model.named_parameters() if p.requires_grad)
    if not names:
        raise InvalidArgument(
            f"Got make_model={function_name(make_model)!r}, whose model has no parameter that "
            "requires grad, so there is no gradient to check."
        )
    step_dtype = least_precise(
        [p.dtype for p in model.parameters() if p.is_floating_point()] or [torch.float32]
    )
    hook_name = "" if comm_hook is None else function_name(comm_hook)
    if communication_dtype is not None:
        wire = validation.floating_dtype(communication_dtype, "communication_dtype")
    else:
        wire = COMPRESSION_HOOKS.get(hook_name, step_dtype)
    wire = least_precise([wire, step_dtype])
    elements = sum(p.numel() for p in model.parameters())
    job = Job(
        make_model=make_model,
        state={k: v.detach().clone() for k, v in model.state_dict().items()},
        inputs=batch_inputs,
        targets=batch_targets,
        loss=loss,
        step=step,
        comm_hook=comm_hook,
        comm_state=comm_state,
        world_size=world_size,
        backend=backend,
        strategy=strategy,
        accumulation_steps=steps,
        reduction=reduction,
        mode=mode,
        find_unused_parameters=bool(find_unused_parameters),
        seed=seed,
        timeout_s=float(timeout_s),
        names=names,
    )
    return _Setup(
        job=job,
        model=model,
        batch=reference.Batch(batch_inputs, batch_targets, loss, reduction, mode),
        step_dtype=step_dtype,
        wire=wire,
        multiplier=multiplier,
        verify_reference=(
            elements <= VERIFY_REFERENCE_MAX_ELEMENTS
            if verify_reference is None
            else bool(verify_reference)
        ),
        labels={
            "model": type(model).__name__,
            "make_model": _label(make_model),
            "loss": function_name(loss),
            "step": function_name(step),
            "comm_hook": hook_name,
        },
    )


def _label(fn: Callable[..., Any]) -> str:
    """``fn``'s name; for ``functools.partial(f, 'resnet18', ...)``: ``f('resnet18', ...)``."""
    if isinstance(fn, functools.partial):
        shown = [repr(a) for a in fn.args] + [f"{k}={v!r}" for k, v in fn.keywords.items()]
        return f"{function_name(fn.func)}({', '.join(shown)})"
    return function_name(fn)


def _batch(
    name: str, value: object, divisor: int, world_size: int, steps: int
) -> tuple[torch.Tensor, ...]:
    """``value`` as batch-first tensors whose batch divides into ``world_size * steps``."""
    tensors = validation.tensor_tuple(value)
    sizes = {t.shape[0] if t.dim() else None for t in tensors}
    if None in sizes or len(sizes) != 1:
        raise InvalidArgument(
            f"Got {name} with batch sizes {sorted(s for s in sizes if s is not None)} "
            f"{'and a 0-d tensor ' if None in sizes else ''}along dim 0, but every tensor of "
            f"{name} must be batch-first with the same batch size."
        )
    size = next(iter(sizes))
    assert size is not None
    if size % divisor:
        raise InvalidArgument(
            f"Got a batch of {size} samples, but {world_size} ranks x {steps} micro-batches "
            f"need a multiple of {divisor} (equal shards, so that the ranks' average is the "
            f"batch's mean). Pass a batch of {max(divisor, size - size % divisor)} or "
            f"{size + divisor - size % divisor} samples."
        )
    return tuple(t.detach().cpu() for t in tensors)


def _built(make_model: Callable[[], torch.nn.Module], seed: int) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = make_model()
    if not isinstance(model, torch.nn.Module):
        raise InvalidArgument(
            f"Got make_model={function_name(make_model)!r}, which returned a "
            f"{type(model).__name__}, but make_model() must return a torch.nn.Module."
        )
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise InvalidArgument(
            f"Got make_model={function_name(make_model)!r}, whose model is on "
            f"{next(p.device for p in model.parameters() if p.device.type != 'cpu')}, but "
            "make_model() must build it on the CPU: each rank moves it to its own device."
        )
    return model


def _unavailable(backend: object, strategy: object, world_size: object) -> str:
    """Why this machine cannot run the backend or strategy ("" when it can)."""
    import torch.distributed as dist

    if not dist.is_available():
        return "this torch was built without torch.distributed"
    if backend == "gloo" and not dist.is_gloo_available():
        return "this torch was built without the gloo backend"
    if backend == "nccl":
        if not dist.is_nccl_available() or not torch.cuda.is_available():
            return "the nccl backend needs CUDA, and CUDA is not available on this machine"
        count = torch.cuda.device_count()
        if isinstance(world_size, int) and count < world_size:
            return f"the nccl backend needs one GPU per rank: {world_size} ranks, {count} GPU(s)"
    if strategy == "fsdp":
        try:
            from torch.distributed.fsdp import fully_shard  # type: ignore[attr-defined]  # noqa: F401
        except ImportError:
            return (
                f"FSDP2 (torch.distributed.fsdp.fully_shard) is not in torch "
                f"{torch.__version__}; it is public from torch 2.6"
            )
    return ""


def _verify(setup: _Setup) -> row_records.Verification:
    """The float64 reference's own gradient, checked by check_module on the whole batch."""
    if not setup.verify_reference:
        return row_records.Verification(
            "skipped", "verify_reference is off: the float64 reference's gradient is trusted"
        )
    targets = reference.as_dtype(setup.batch.targets, torch.float64)
    loss = setup.batch.loss

    def whole_batch_loss(output: Any) -> torch.Tensor:
        return loss(output, *targets)

    result = check_module(
        setup.model,
        reference.as_dtype(setup.batch.inputs, torch.float64),
        loss=whole_batch_loss,
        dtype=torch.float64,
        mode=setup.batch.mode,
        include_inputs=False,
        seed=setup.job.seed,
    )
    return row_records.verification(result, by_tensor=True)


def _baseline(setup: _Setup, golden: reference.Gradients) -> reference.Gradients:
    """The yardstick: a correct step in one process in its dtype, shard by shard as the ranks
    compute it (through the wire's dtype when that is lower). In the step's own dtype a
    parameter whose sharded gradient is itself more than ``multiplier`` times as far from
    float64 as the whole batch's, normwise, is judged against the whole batch instead: the
    loss is not what ``reduction`` says (a sum declared a mean), and that is what the check
    must find, not what its yardstick may allow."""
    job = setup.job
    split = reference.sharded(
        setup.model, setup.batch, job.names, job.world_size, job.accumulation_steps, setup.wire
    )
    if setup.wire != setup.step_dtype:
        return split
    whole = reference.whole_batch(setup.model, setup.batch, job.names, None)
    floor = reference_floor(setup.step_dtype)

    def normwise(values: torch.Tensor, exact: torch.Tensor) -> float:
        return max(gate.errors(values, exact.double()).normwise, floor)

    chosen: reference.Gradients = {}
    for name in job.names:
        exact, sharded, batch = golden[name], split[name], whole[name]
        consistent = (
            exact is not None
            and sharded is not None
            and batch is not None
            and normwise(sharded, exact) <= setup.multiplier * normwise(batch, exact)
        )
        chosen[name] = sharded if consistent else batch
    return chosen


def _rank_problems(launched: Launch, names: tuple[str, ...]) -> tuple[RankProblem, ...]:
    """The ranks that did not finish, then every finished rank's gradients that are not
    rank 0's (or, when rank 0 did not finish, the first finished rank's)."""
    cause = launched.failure_order[0] if launched.failure_order else None
    problems = [
        RankProblem(o.rank, "", o.failure)
        if o.rank == cause or o.stopped
        else RankProblem(o.rank, "", f"{o.failure}\n    (after rank {cause} failed first)")
        for o in launched.failures
    ]
    finished = [o for o in launched.outcomes if o.gradients is not None]
    for other in finished[1:]:
        first = finished[0]
        for name in names:
            problem = _disagreement(other.gradients, first.gradients, name, first.rank)
            if problem:
                problems.append(RankProblem(other.rank, name, problem))
    return tuple(problems)


def _disagreement(ours: Any, theirs: Any, name: str, first_rank: int) -> str:
    """How this rank's gradient of ``name`` differs from rank ``first_rank``'s ("" if not)."""
    mine, first = ours[name], theirs[name]
    if mine is None and first is None:
        return ""
    if mine is None or first is None:
        state = "missing (None)" if mine is None else "present"
        return (
            f"is {state} where rank {first_rank}'s is not: the parameter took part in one "
            "rank's forward and not in the other's (DDP needs find_unused_parameters=True)"
        )
    if row_records.bitwise_equal(mine, first):
        return ""
    size = row_records.spread([first, mine], first.double())
    return (
        f"differs from rank {first_rank}'s by {size:.3g} normwise (every rank must hold the "
        "same gradient, or the replicas drift apart)"
    )


def _row(
    setup: _Setup,
    name: str,
    golden: torch.Tensor | None,
    baseline: torch.Tensor | None,
    finished: list[tuple[int, dict[str, torch.Tensor | None]]],
) -> tuple[ReferenceRow, float | None]:
    """One parameter's row: the first finished rank's gradient against float64; and, when it
    failed, the uniform factor between that gradient and the golden one (None: there is
    none)."""
    values = [gradients[name] for _, gradients in finished]
    candidate = values[0]

    def record(
        golden: torch.Tensor,
        verdict: tuple[str, str],
        errors: tuple[gate.Errors | None, gate.Errors],
        spread: float = 0.0,
    ) -> ReferenceRow:
        return row_records.record(
            name, "parameter", golden, setup.wire, setup.multiplier, verdict, errors, spread
        )

    label = f"the gradient of {name}"
    if setup.job.world_size > 1:
        label = f"rank {finished[0][0]}'s gradient of {name}"
    if golden is None:
        shape = next((tuple(v.shape) for v in values if v is not None), ())
        zeros = torch.zeros(shape, dtype=torch.float64)
        unused = all(v is None or not bool(v.any()) for v in values)
        unused_verdict = (
            (PASSED, "no gradient anywhere: the loss does not depend on this parameter")
            if unused
            else (FAILED, f"{label} is nonzero on the ranks, but the loss does not depend on it")
        )
        none = gate.errors(zeros, zeros)
        return record(zeros, unused_verdict, (none, none)), None
    golden = golden.double()
    base = gate.errors(torch.zeros_like(golden) if baseline is None else baseline, golden)
    if candidate is None:
        missing = (
            FAILED,
            f"{label} is missing (None): the parameter took no part in rank "
            f"{finished[0][0]}'s forward, but it does in the whole-batch reference",
        )
        return record(golden, missing, (None, base)), None
    errors = gate.errors(candidate, golden)
    verdict = gate.judge(errors, base, setup.wire, setup.multiplier, label)
    note, scale = verdict.note, None
    if verdict.status == FAILED:
        scale = uniform_scale(candidate, golden)
        if scale is not None and abs(scale - 1.0) <= 0.01:
            scale = None  # the right size, wrong in its details
        if scale is not None:
            note = f"{note}; the gradient is {scale:.4g} x the reference's"
    present = [v for v in values if v is not None]
    spread = row_records.spread(present, golden)
    return record(golden, (verdict.status, note), (errors, base), spread), scale


def uniform_scale(value: torch.Tensor, golden: torch.Tensor) -> float | None:
    """The factor ``c`` with ``value = c * golden`` to :data:`UNIFORM_SCALE_RESIDUAL`, or None
    (no such factor, or a zero golden value)."""
    x, g = value.detach().double().flatten(), golden.double().flatten()
    size = float(g.dot(g))
    if not size > 0 or not bool(torch.isfinite(x).all()):
        return None
    scale = float(x.dot(g)) / size
    residual = float((x - scale * g).norm())
    norm = float(x.norm())
    return scale if norm > 0 and residual <= UNIFORM_SCALE_RESIDUAL * norm else None


def _result(
    setup: _Setup,
    status: str,
    rows: tuple[ReferenceRow, ...],
    problems: tuple[RankProblem, ...],
    verified: row_records.Verification,
    launched: Launch | None,
    start: float,
    skipped_reason: str,
    hints: list[str],
) -> DistributedCheckResult:
    job = setup.job
    reproduce = (
        f"gradcheck.check_distributed({setup.labels['make_model']}, inputs, "
        f"world_size={job.world_size}, backend={job.backend!r}, strategy={job.strategy!r}, "
        f"accumulation_steps={job.accumulation_steps}, seed={job.seed})"
    )
    label = messages.subject(
        "check_distributed",
        setup.labels["model"],
        f"{job.strategy.upper()}, {job.world_size} {job.backend} ranks, "
        f"{job.accumulation_steps} micro-batch(es), {str(setup.step_dtype)[6:]}",
    )
    if skipped_reason:
        message = f"Skipped: {label}: {skipped_reason}\n{messages.reproduce_line(reproduce)}"
    else:
        message = messages.distributed_message(
            label,
            [messages.rank_problem_line(p.rank, p.tensor, p.problem) for p in problems],
            hints,
            messages.reference_message(
                label,
                [row_records.shown(row) for row in rows],
                verified.status,
                verified.note,
                setup.multiplier,
                reproduce,
            ),
        )
    return DistributedCheckResult(
        passed=status == PASSED,
        status=status,
        model=setup.labels["model"],
        strategy=job.strategy,
        backend=job.backend,
        world_size=job.world_size,
        accumulation_steps=job.accumulation_steps,
        reduction=job.reduction,
        loss=setup.labels["loss"],
        step=setup.labels["step"],
        comm_hook=setup.labels["comm_hook"],
        dtype=str(setup.step_dtype).removeprefix("torch."),
        communication_dtype=str(setup.wire).removeprefix("torch."),
        device="cuda" if job.backend == "nccl" else "cpu",
        mode=job.mode,
        multiplier=setup.multiplier,
        seed=job.seed,
        reference_check=verified.status,
        reference_note=verified.note,
        rows=rows,
        rank_problems=problems,
        skipped_reason=skipped_reason,
        message=message,
        reproduce=reproduce,
        startup_s=math.nan if launched is None else launched.startup_s,
        duration_s=time.perf_counter() - start,
    )


def _unused(
    finished: list[tuple[int, dict[str, torch.Tensor | None]]], golden: reference.Gradients
) -> dict[int, list[str]]:
    """The parameters each finished rank holds no gradient for, though the reference does."""
    unused: dict[int, list[str]] = {}
    for rank, gradients in finished:
        names = [n for n, g in gradients.items() if g is None and golden.get(n) is not None]
        if names:
            unused[rank] = names
    return unused


def _hints(setup: _Setup, scales: list[float | None], unused: dict[int, list[str]]) -> list[str]:
    """What the failures have in common: parameters a rank's forward left out (``unused``:
    rank -> names), one factor between every failing gradient and the reference (``scales``:
    each failing row's, None where it has none), or a train-mode model whose BatchNorm or
    Dropout sees only each rank's shard."""
    hints = []
    for rank, names in unused.items():
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        sync = (
            ""
            if setup.job.find_unused_parameters or setup.job.strategy != "ddp"
            else "; DDP (find_unused_parameters=False) then never all-reduces them, and the "
            "other ranks wait for them in vain. Use every parameter on every rank, or pass "
            "find_unused_parameters=True"
        )
        hints.append(f"rank {rank}'s forward did not use {shown}{sync}")
    if not scales:
        return hints
    known = [scale for scale in scales if scale is not None]
    if len(known) == len(scales) and all(abs(s - known[0]) <= 1e-3 * abs(known[0]) for s in known):
        hints.append(
            messages.scale_hint(known[0], setup.job.world_size, setup.job.accumulation_steps)
        )
    if setup.job.mode == "train":
        per_shard = sorted(
            {
                type(m).__name__
                for m in setup.model.modules()
                if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.Dropout))
                and not isinstance(m, torch.nn.SyncBatchNorm)
            }
        )
        if per_shard:
            hints.append(
                f"mode='train' with {', '.join(per_shard)}: each rank normalises over (or "
                "draws masks for) its own shard, so its gradient is not the whole batch's; "
                "check in mode='eval' or use torch.nn.SyncBatchNorm"
            )
    return hints
