"""The speed benchmarks' own machinery (``benchmarks/versus_torch.py``, ``memory_child.py`` and
the whole-model ratio of ``test_bench_model.py``): what each side's row records, how the OpInfo
samples are drawn, and what the memory child measures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from test_bench_memory import run_child
from test_bench_model import RATIO, record_ratio
from versus_torch import (
    QUICK_SAMPLES,
    SEED,
    batching_facts,
    draw_opinfo,
    hand_written_cases,
    opinfo_request,
    time_case,
    time_side,
)

from gradcheck.ops.samples import Case


def test_the_opinfo_request_reads_the_environment() -> None:
    assert opinfo_request({}) == (QUICK_SAMPLES, SEED)
    assert opinfo_request({"GRADCHECK_BENCH_OPS": "all"}) == (None, SEED)
    assert opinfo_request({"GRADCHECK_BENCH_OPS": "7", "GRADCHECK_BENCH_OPS_SEED": "3"}) == (7, 3)
    with pytest.raises(ValueError):
        opinfo_request({"GRADCHECK_BENCH_OPS": "many"})


def test_a_row_has_each_sides_time_status_and_calls_of_the_function() -> None:
    name, case = hand_written_cases()[0]  # sin(x) * x on 20 elements
    row = time_case(name, case, op="hand")
    assert row["name"] == "sin(x) * x" and row["op"] == "hand"
    assert (row["sizes"], row["numel"]) == ("(20,)", 20)
    for side in ("ours", "slow", "fast"):
        assert row[f"{side}_status"] == "passed", row
        assert row[f"{side}_s"] > 0 and row[f"{side}_repeats"] >= 1
    # slow mode: one evaluation for the output and two per element; fast mode: a few
    assert row["slow_calls"] == 41
    # the batched engine calls fn a few times (one vmapped call per step), torch per element
    assert 0 < row["ours_calls"] < row["slow_calls"]
    assert row["slow_calls"] > row["fast_calls"] > 0


def test_a_sample_over_3x_is_timed_again_and_the_lower_ratio_kept(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import versus_torch

    timings = iter([4.0, 0.8, 5.0, 6.0, 2.0])  # our seconds per timing; slow mode takes 1 s

    def once(name, case, nondet_tol, order, facts):  # type: ignore[no-untyped-def]
        return {"name": name, "ours_s": next(timings), "slow_s": 1.0, **facts}

    monkeypatch.setattr(versus_torch, "_timed_once", once)
    name, case = hand_written_cases()[0]
    settled = time_case(name, case)  # 4x, then 0.8x: the second kept
    assert (settled["ours_s"], settled["other_ratio_slow"]) == (0.8, 4.0)
    still = time_case(name, case)  # 5x, then 6x: the first kept, still over 3x
    assert (still["ours_s"], still["other_ratio_slow"]) == (5.0, 6.0)
    under = time_case(name, case)  # 2x: timed once
    assert under["ours_s"] == 2.0 and "other_ratio_slow" not in under
    assert next(timings, None) is None


def test_a_side_that_fails_errs_or_runs_out_of_its_budget_says_so() -> None:
    x = torch.linspace(-1.0, 1.0, 4, dtype=torch.float64).requires_grad_()

    class Wrong(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):  # type: ignore[no-untyped-def]
            return x * 2

        @staticmethod
        def backward(ctx, grad):  # type: ignore[no-untyped-def]
            return grad * 3

    wrong = Case(Wrong.apply, (x,), ((4,),), "wrong")
    assert time_side("ours", wrong)["status"] == "failed"
    assert time_side("torch_slow", wrong)["status"] == "failed"

    def raises(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("no kernel")

    erring = time_side("ours", Case(raises, (x,), ((4,),), "raises"))
    assert erring["status"] == "error" and "no kernel" in erring["message"]
    assert erring["repeats"] == 0

    def busy(x: torch.Tensor) -> torch.Tensor:
        import time

        started = time.process_time()
        while time.process_time() - started < 0.1:
            pass
        return x * 2

    out_of_budget = time_side("ours", Case(busy, (x,), ((4,),), "busy"), budget_s=0.3)
    assert out_of_budget["status"] == "timeout" and out_of_budget["repeats"] == 0
    assert out_of_budget["s"] >= 0.25  # the time it had used: a lower bound


def test_the_opinfo_draw_is_fixed_by_its_seed_and_skips_what_torch_skips() -> None:
    pytest.importorskip("expecttest")
    from ops_planted import HOSTILE, RIGHT_AND_WRONG

    def drawn(count, seed, database):  # type: ignore[no-untyped-def]
        return [(d.key, d.index) for d in draw_opinfo(count, seed, database)]

    everything = drawn(None, 0, RIGHT_AND_WRONG)  # planted.skipped carries torch's skip
    assert everything == [
        ("planted.sin", 0),
        ("planted.sin", 1),
        ("planted.sin_bug", 0),
        ("planted.sin_bug", 1),
    ]
    two = drawn(2, 5, HOSTILE)
    assert two == drawn(2, 5, HOSTILE)  # the seed fixes the draw
    assert len({key for key, _ in two}) == 2  # distinct ops
    assert {index for _, index in two} <= {0, 1}  # within each op's samples
    seeds = {tuple(drawn(2, seed, HOSTILE)) for seed in range(8)}
    assert len(seeds) > 1  # and another seed draws another subset


def test_the_whole_model_ratio_is_recorded_by_both_benchmarks_in_either_order() -> None:
    for first, second in (("check_module", "gradcheck_fast"), ("gradcheck_fast", "check_module")):
        seconds = {"check_module": 20.0, "gradcheck_fast": 1900.0}
        infos: dict[str, dict] = {first: {}, second: {}}
        timed: dict[str, tuple[float, dict]] = {}
        record_ratio(first, seconds[first], infos[first], timed)
        assert RATIO not in infos[first]  # until both ran
        record_ratio(second, seconds[second], infos[second], timed)
        assert infos["check_module"][RATIO] == infos["gradcheck_fast"][RATIO] == 95.0


def test_the_memory_child_measures_the_peak_over_the_input() -> None:
    facts = run_child(100_000, 1, "check_function")
    assert facts["status"] == "passed" and facts["elements"] == 100_000
    assert facts["input_bytes"] == 800_000 and facts["calls"] > 0
    assert facts["cpu_s"] > 0 and facts["wall_s"] > 0
    # check_function keeps several copies of the input: the peak is seen, in megabytes
    assert facts["peak_increase_bytes"] > facts["input_bytes"]
    assert facts["peak_over_input"] == facts["peak_increase_bytes"] / facts["input_bytes"]
    assert facts["method"].startswith(("VmHWM reset", "ru_maxrss"))
    # the floor: one forward and one backward, one call; it holds the leaf, the output, the
    # saved tensors, the cotangent and the gradient (at 1e6 and 1e7 about 7x the input), and
    # check_function holds more
    floor = run_child(1_000_000, 1, "autograd_once")
    assert (floor["status"], floor["calls"]) == ("passed", 1)
    assert 4.0 < floor["peak_over_input"] < 12.0, floor


def test_batching_facts_name_views_and_the_ops_vmap_loops_over() -> None:
    x = torch.rand(3, 4, dtype=torch.float64)
    weight = torch.rand(2, 4, 4, dtype=torch.float64)
    bilinear = Case(lambda a, w: torch.nn.functional.bilinear(a, a, w), (x, weight), (), "b")
    assert batching_facts(bilinear) == {"views": False, "vmap_loops": "aten::bilinear"}
    strided = torch.rand(10, dtype=torch.float64)[::2]
    assert batching_facts(Case(torch.sin, (strided,), (), "view")) == {
        "views": True,
        "vmap_loops": "",
    }
    assert batching_facts(Case(torch.sin, (x,), (), "plain")) == {"views": False, "vmap_loops": ""}
    sparse = torch.eye(3, dtype=torch.float64).to_sparse_csr()
    assert batching_facts(Case(lambda a: a.to_dense(), (sparse,), (), "csr"))["views"] is False
