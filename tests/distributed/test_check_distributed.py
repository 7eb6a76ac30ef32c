"""check_distributed on 2 gloo ranks: correct steps pass (DDP with 1 and 2 micro-batches, a sum
loss, FSDP2, torch's fp16 compression hook under the low-precision gate) and each planted
distributed-training bug fails with a message that names it."""

from __future__ import annotations

import json
import multiprocessing
import socket
import time

import pytest
import ranked_models as planted
import torch
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

import gradcheck
from gradcheck.distributed_results import DistributedCheckResult

_results: dict[str, DistributedCheckResult] = {}


def checked(key: str, make_model=planted.mlp, samples=8, **options) -> DistributedCheckResult:  # type: ignore[no-untyped-def]
    """One check per key for the whole module (each costs a process start)."""
    if key not in _results:
        inputs, targets = planted.batch(samples)
        options.setdefault("loss", planted.mse)
        _results[key] = gradcheck.check_distributed(make_model, inputs, targets=targets, **options)
    return _results[key]


@pytest.mark.parametrize("steps", [1, 2])
def test_correct_ddp_passes_with_one_and_two_micro_batches(steps: int) -> None:
    result = checked(f"ddp{steps}", accumulation_steps=steps)
    assert result.status == "passed", result.message
    assert [row.name for row in result.rows] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert all(row.status == "passed" and row.kind == "parameter" for row in result.rows)
    assert result.reference_check == "passed"  # the small MLP's reference is checked
    assert result.rank_problems == ()
    assert all(row.spread == 0.0 for row in result.rows)  # both ranks bit for bit
    assert all(row.candidate_error < 1e-6 for row in result.rows)
    assert 0 < result.startup_s < result.duration_s


def test_the_result_round_trips_through_json() -> None:
    result = checked("ddp2", accumulation_steps=2)
    data = json.loads(result.to_json())
    assert data["kind"] == "distributed"
    assert "DDP on 2 gloo ranks, 2 micro-batches" in data["label"]
    assert DistributedCheckResult.from_dict(data) == result


def test_the_caller_s_rng_and_batch_are_left_alone() -> None:
    inputs, targets = planted.batch()
    kept_inputs, kept_state = inputs.clone(), torch.get_rng_state()
    result = gradcheck.check_distributed(
        planted.mlp, inputs, targets=targets, loss=planted.mse, verify_reference=False
    )
    assert result.passed, result.message
    assert result.reference_check == "skipped"
    assert torch.equal(inputs, kept_inputs) and not inputs.requires_grad
    assert torch.equal(torch.get_rng_state(), kept_state)


def test_a_sum_loss_with_reduction_sum_passes() -> None:
    result = checked("sum", loss=planted.summed_squares, reduction="sum")
    assert result.status == "passed", result.message


def test_a_sum_loss_checked_as_a_mean_fails_at_half_the_gradient() -> None:
    result = checked("sum-as-mean", loss=planted.summed_squares)
    assert result.status == "failed"
    assert all(row.status == "failed" for row in result.rows)
    assert "0.5 x the reference's: divided by world_size once too often" in result.message


def test_fsdp2_with_two_micro_batches_passes() -> None:
    result = checked("fsdp", strategy="fsdp", accumulation_steps=2)
    assert result.status == "passed", result.message
    assert result.strategy == "fsdp"


def test_the_fp16_compression_hook_passes_the_low_precision_gate() -> None:
    result = checked("fp16", comm_hook=default_hooks.fp16_compress_hook)
    assert result.status == "passed", result.message
    assert result.communication_dtype == "float16" and result.dtype == "float32"
    # its gradients are fp16-accurate, far from float32's 1e-7, and within 3x the yardstick's
    assert all(1e-5 < row.candidate_error < 2e-3 for row in result.rows)
    assert all(row.ratio < 3 for row in result.rows)


def test_the_fp16_compression_hook_fails_float32_s_gate() -> None:
    """The gate is chosen by the communication dtype: judged as float32, fp16 is too lossy."""
    result = checked(
        "fp16-as-32", comm_hook=default_hooks.fp16_compress_hook, communication_dtype=torch.float32
    )
    assert result.status == "failed"
    assert all(row.status == "failed" and row.ratio > 100 for row in result.rows)


def test_planted_a_hook_that_all_reduces_without_dividing_doubles_every_gradient() -> None:
    result = checked("sum-hook", comm_hook=planted.sum_all_reduce_hook)
    assert result.status == "failed"
    assert all(row.status == "failed" for row in result.rows)
    assert all("the gradient is 2 x the reference's" in row.note for row in result.rows)
    assert "without dividing by world_size" in result.message
    assert "neither" not in result.message  # one micro-batch: no division was missing there
    with pytest.raises(gradcheck.GradientMismatch):
        result.raise_for_failure()


def test_planted_accumulation_without_dividing_by_the_micro_batches_fails() -> None:
    result = checked(
        "no-divide", step=planted.step_without_dividing, accumulation_steps=3, samples=12
    )
    assert result.status == "failed"
    assert "3 x the reference's: the 3 micro-batches' losses were not divided" in result.message


def test_planted_a_parameter_left_out_of_rank_one_s_graph() -> None:
    result = checked("skips", make_model=planted.SkipsOnRankOne)
    assert result.status == "failed"
    assert "rank 1's forward did not use second.weight, second.bias" in result.message
    assert result.row("second.weight").status == "failed"


def test_planted_left_out_parameter_with_find_unused_parameters_averages_a_zero_in() -> None:
    result = checked("skips-unused", make_model=planted.SkipsOnRankOne, find_unused_parameters=True)
    assert result.status == "failed"
    assert result.row("second.weight").status == "failed"
    assert result.rank_problems == ()  # the ranks agree with each other, not with the batch


def test_planted_ranks_that_never_communicate_disagree_and_are_named() -> None:
    result = checked("local", comm_hook=planted.local_only_hook)
    assert result.status == "failed"
    assert {(p.rank, p.tensor) for p in result.rank_problems} == {
        (1, name) for name in ("0.weight", "0.bias", "2.weight", "2.bias")
    }
    assert "rank 1's gradient of 0.weight differs from rank 0's" in result.message


def test_a_rank_killed_mid_step_fails_cleanly_naming_it() -> None:
    inputs, targets = planted.batch()
    started = time.perf_counter()
    result = gradcheck.check_distributed(
        planted.DiesOnRankOne, inputs, targets=targets, loss=planted.mse
    )
    assert time.perf_counter() - started < 60
    assert result.status == "failed" and result.rows == ()
    first = result.rank_problems[0]
    assert first.rank == 1
    assert first.problem.startswith("died (killed by SIGKILL) while forward and loss of")
    assert "rank 1 died (killed by SIGKILL)" in result.message.splitlines()[1]
    assert multiprocessing.active_children() == []


def test_a_rank_that_raises_is_named_with_its_error_and_where() -> None:
    result = checked("raises", make_model=planted.RaisesOnRankOne)
    assert result.status == "failed"
    first = result.rank_problems[0]
    assert first.rank == 1
    assert "raised ValueError: planted: rank 1 cannot run this forward" in first.problem
    assert "ranked_models.py" in first.problem  # the frame it was raised in
    assert "(after rank 1 failed first)" in result.message


def test_a_hung_rank_is_stopped_after_timeout_s_and_the_port_released() -> None:
    from gradcheck.distributed import check as distributed_check
    from gradcheck.distributed import launch as launcher

    inputs, targets = planted.batch()
    seen: list[launcher.Launch] = []

    def recorded_launch(job):  # type: ignore[no-untyped-def]
        seen.append(launcher.launch(job))
        return seen[-1]

    patch = pytest.MonkeyPatch()
    patch.setattr(distributed_check, "launch", recorded_launch)
    try:
        started = time.perf_counter()
        result = gradcheck.check_distributed(
            planted.HangsOnRankOne, inputs, targets=targets, loss=planted.mse, timeout_s=10
        )
        elapsed = time.perf_counter() - started
    finally:
        patch.undo()
    assert result.status == "failed"
    assert 10 <= elapsed < 10 + 25
    assert {p.rank for p in result.rank_problems} == {0, 1}
    assert all("timed out" in p.problem for p in result.rank_problems)
    assert multiprocessing.active_children() == []
    with socket.socket() as probe:  # the rendezvous port is free again
        probe.bind(("127.0.0.1", seen[0].port))


def test_a_silent_death_noticed_after_its_peers_error_is_still_named_first() -> None:
    # Under load the parent can see rank 0's connection error before it reaps the killed
    # rank 1; a silent death soon after the first failure is taken for the cause.
    from gradcheck.distributed.launch import _causes_first

    assert _causes_first([0, 1], silent=[1]) == [1, 0]
    assert _causes_first([0, 1], silent=[]) == [0, 1]
    assert _causes_first([2, 0, 1], silent=[1]) == [1, 2, 0]
