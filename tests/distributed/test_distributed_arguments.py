"""check_distributed's arguments are checked before any process starts, and each mistake gets
an InvalidArgument that names it and the fix; a machine that cannot run the backend or the
strategy gives a skipped result with the reason, never a pass. The parts that need no ranks
(the shards, the default step's scale, the compressed yardstick, the uniform-scale reading)
are checked here too."""

from __future__ import annotations

import functools
import multiprocessing
import sys
import types

import pytest
import ranked_models as planted
import torch

import gradcheck
from gradcheck import messages
from gradcheck.distributed import job, reference
from gradcheck.distributed.check import uniform_scale


def _check(**options):  # type: ignore[no-untyped-def]
    inputs, targets = planted.batch()
    options.setdefault("make_model", planted.mlp)
    options.setdefault("inputs", inputs)
    options.setdefault("targets", targets)
    make_model = options.pop("make_model")
    given = options.pop("inputs")
    return gradcheck.check_distributed(make_model, given, **options)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"make_model": lambda: torch.nn.Linear(6, 3)}, "a lambda, but make_model travels"),
        ({"loss": lambda out, y: out.sum()}, "Got loss=<function"),
        ({"step": functools.partial(lambda m, i, t, c: 0)}, "cannot be pickled"),
        ({"world_size": 0}, "world_size"),
        ({"accumulation_steps": 3}, "need a multiple of 6"),
        ({"backend": "mpi"}, "'gloo' or 'nccl'"),
        ({"strategy": "zero"}, "'ddp' or 'fsdp'"),
        ({"reduction": "max"}, "'mean' or 'sum'"),
        ({"mode": "training"}, "'eval' or 'train'"),
        ({"timeout_s": 0}, "timeout_s must be a positive number"),
        ({"multiplier": 0.5}, "multiplier must be a finite number >= 1"),
        ({"strategy": "fsdp", "comm_hook": planted.sum_all_reduce_hook}, "FSDP2 has none"),
        ({"strategy": "fsdp", "find_unused_parameters": True}, "a DDP option"),
        ({"targets": torch.zeros(4, 3)}, "each sample needs its target"),
        ({"make_model": planted.batch}, "must return a torch.nn.Module"),
        ({"inputs": [torch.zeros(8, 6), torch.zeros(6, 6)]}, "the same batch size"),
    ],
)
def test_bad_arguments_are_refused_before_any_process_starts(options, fragment) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(gradcheck.InvalidArgument) as raised:
        _check(**options)
    assert fragment in str(raised.value)
    assert multiprocessing.active_children() == []


def test_a_function_of_a_main_module_without_a_file_is_refused(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    interactive = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", interactive)

    def make() -> torch.nn.Module:
        return torch.nn.Linear(6, 3)

    make.__module__, make.__qualname__ = "__main__", "make"
    with pytest.raises(gradcheck.InvalidArgument, match="interactive session or notebook"):
        _check(make_model=make)


def test_nccl_without_gpus_is_skipped_with_the_reason() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: nccl can run")
    result = _check(backend="nccl")
    assert result.status == "skipped" and not result.passed
    assert "nccl backend needs CUDA" in result.skipped_reason
    assert result.message.startswith("Skipped: check_distributed")
    assert result.rows == ()


def test_fsdp_without_fully_shard_is_skipped_with_the_reason(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "torch.distributed.fsdp", types.ModuleType("fsdp"))
    result = _check(strategy="fsdp")
    assert result.status == "skipped"
    assert "FSDP2 (torch.distributed.fsdp.fully_shard) is not in torch" in result.skipped_reason


def test_micro_batches_are_contiguous_equal_shards() -> None:
    samples = torch.arange(12).reshape(12, 1)
    shards = [job.micro_batches([samples], 2, 3, rank) for rank in range(2)]
    flat = [int(x) for rank in shards for micro in rank for x in micro[0].flatten()]
    assert flat == list(range(12))
    assert [len(micro[0]) for micro in shards[1]] == [2, 2, 2]
    assert job.micro_batches([], 2, 3, 0) == [(), (), ()]


@pytest.mark.parametrize(
    ("reduction", "steps", "world_size", "scale"),
    [("mean", 4, 2, 0.25), ("mean", 1, 3, 1.0), ("sum", 4, 2, 2.0), ("sum", 1, 3, 3.0)],
)
def test_the_correct_step_scales_a_mean_by_steps_and_a_sum_by_world_size(
    reduction: str, steps: int, world_size: int, scale: float
) -> None:
    context = job.StepContext(0, world_size, 0, steps, reduction, job.default_loss(reduction))
    assert job.loss_scale(context) == scale


def test_the_compressed_yardstick_is_the_shards_sent_through_fp16() -> None:
    inputs, targets = planted.batch()
    model = planted.mlp()
    names = tuple(name for name, _ in model.named_parameters())
    batch = reference.Batch((inputs,), (targets,), planted.mse, "mean", "eval")
    exact = reference.whole_batch(model, batch, names, torch.float64)
    through_fp32 = reference.sharded(model, batch, names, 2, 2, torch.float32)
    through_fp16 = reference.sharded(model, batch, names, 2, 2, torch.float16)
    for name in names:
        truth = exact[name]
        assert truth is not None
        error32 = float((through_fp32[name].double() - truth).norm() / truth.norm())  # type: ignore[union-attr]
        error16 = float((through_fp16[name].double() - truth).norm() / truth.norm())  # type: ignore[union-attr]
        assert error32 < 1e-6 < error16 < 2e-3
        assert through_fp16[name].dtype == torch.float32  # type: ignore[union-attr]


def test_uniform_scale_reads_a_factor_and_only_a_factor() -> None:
    golden = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert uniform_scale(2 * golden.float(), golden) == pytest.approx(2.0, rel=1e-6)
    assert uniform_scale(golden + 0.1, golden) is None
    assert uniform_scale(golden, torch.zeros_like(golden)) is None


@pytest.mark.parametrize(
    ("scale", "world_size", "steps", "fragment"),
    [
        (2.0, 2, 1, "without dividing by world_size"),
        (3.0, 2, 3, "not divided by accumulation_steps"),
        (4.0, 2, 2, "neither divided by world_size nor by accumulation_steps"),
        (0.5, 2, 1, "divided by world_size once too often"),
        (1.7, 2, 1, "(a uniform scale)"),
    ],
)
def test_a_uniform_scale_is_explained(
    scale: float, world_size: int, steps: int, fragment: str
) -> None:
    assert fragment in messages.scale_hint(scale, world_size, steps)


def test_one_micro_batch_is_no_cause_of_its_own() -> None:
    hint = messages.scale_hint(2.0, 2, 1)
    assert "without dividing by world_size" in hint
    assert "accumulation_steps" not in hint and "neither" not in hint


def test_a_scale_that_fits_two_causes_names_both() -> None:
    hint = messages.scale_hint(2.0, 2, 2)
    assert "without dividing by world_size" in hint and "not divided by accumulation" in hint
    assert "neither" not in hint
