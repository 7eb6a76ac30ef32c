"""Cost of verifying a whole model: check_module on ResNet18 against the peer,
``torch.autograd.gradcheck(fast_mode=True)`` per parameter tensor, in the same run.

Setup as in the model issue: torchvision resnet18, random init (seed 0), float64, eval mode,
batch 2 of 64x64 images, all 62 parameter tensors plus the input. Run with
``pytest benchmarks/test_bench_model.py --benchmark-only``: the peer's estimated total
(``extra_info["full_run_s"]``) over check_module's mean is in the summary printed at the end and in
the HTML report, in whichever order the two ran; once both ran in one session, both record it
as ``extra_info["full_run_over_check_module"]`` too.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from gradcheck import check_module

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is None, reason="needs torchvision"
)


def resnet18_and_images():  # type: ignore[no-untyped-def]
    import torchvision

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = torchvision.models.resnet18()
    return model, torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


GROUP = "verify ResNet18 (62 parameter tensors + input, float64, eval, batch 2 of 64x64)"
RATIO = "full_run_over_check_module"
"""The ``extra_info`` key of the peer's estimated total over check_module's mean time."""
_TIMED: dict[str, tuple[float, dict]] = {}
"""Each judge's seconds on the whole model and its ``extra_info``, as its benchmark ends."""


def record_ratio(
    judge: str, seconds: float, extra_info: dict, timed: dict[str, tuple[float, dict]] = _TIMED
) -> None:
    """Keep ``judge``'s seconds in ``timed``; once both judges ran in this session, write the
    peer's total over check_module's time (:data:`RATIO`) into both benchmarks' ``extra_info``,
    whichever ran first (the report also computes it from the group: the two agree)."""
    timed[judge] = (seconds, extra_info)
    if {"check_module", "gradcheck_fast"} <= timed.keys():
        (ours, ours_info), (peer, peer_info) = timed["check_module"], timed["gradcheck_fast"]
        for info in (ours_info, peer_info):
            info.update({RATIO: peer / ours, "check_module_s": ours, "peer_full_run_s": peer})


def test_check_module_resnet18(benchmark):  # type: ignore[no-untyped-def]
    benchmark.group = GROUP
    model, images = resnet18_and_images()
    result = benchmark.pedantic(
        check_module, args=(model, images), rounds=2, iterations=1, warmup_rounds=0
    )
    assert result.passed, result.message
    seconds = benchmark.stats.stats.mean
    benchmark.extra_info.update(
        judge="check_module",
        rows=len(result.rows),
        evaluations=result.evaluations,
        seconds_per_row=seconds / len(result.rows),
    )
    record_ratio("check_module", seconds, benchmark.extra_info)
    print(
        f"\ncheck_module: {len(result.rows)} rows, {result.evaluations} evaluations, "
        f"{seconds:.1f} s on {torch.get_num_threads()} threads"
    )


def test_peer_fast_gradcheck_resnet18_per_tensor(benchmark):  # type: ignore[no-untyped-def]
    from peer import time_fast_gradcheck

    benchmark.group = GROUP
    model, _ = resnet18_and_images()
    names = [(n, p.numel()) for n, p in model.named_parameters()]
    timings, forward_s = benchmark.pedantic(
        time_fast_gradcheck, args=(names,), kwargs={"budget_s": 20.0}, rounds=1, iterations=1
    )
    measured = sum(t.seconds for t in timings)
    extrapolated = sum(t.extrapolated for t in timings)
    fast_path = sum(t.seconds for t in timings if t.verdict)
    false_failures = [t.name for t in timings if not t.verdict]
    benchmark.extra_info.update(
        judge="gradcheck_fast",
        full_run_s=extrapolated,  # what the report divides by check_module's time
        tensors=len(timings),
        one_forward_s=forward_s,
        measured_s=measured,
        extrapolated_s=extrapolated,
        fast_path_only_s=fast_path,
        false_failures=false_failures,
    )
    record_ratio("gradcheck_fast", extrapolated, benchmark.extra_info)
    lines = [
        f"\npeer gradcheck(fast_mode=True) per tensor: {len(timings)} tensors, one forward "
        f"{forward_s * 1e3:.0f} ms",
        f"  measured {measured:.1f} s (each tensor capped at 20 s), extrapolated "
        f"{extrapolated:.0f} s",
        f"  fast path of the {len(timings) - len(false_failures)} tensors it passed: "
        f"{fast_path:.1f} s",
        f"  false failures on a correct model (slow-mode fallback): {false_failures}",
    ]
    print("\n".join(lines))
    assert len(timings) == len(names)


def test_detection_of_a_planted_bug_ours_vs_peer(benchmark):  # type: ignore[no-untyped-def]
    """The same 1e-4 weight-gradient bug in layer3.0.conv1: the peer's verdict at its defaults
    (rtol=1e-3) against check_module's row for that tensor; both timings recorded."""
    import sys
    import time
    from pathlib import Path

    from torch.func import functional_call

    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from model_fixtures import plant_wrong_conv

    benchmark.group = "detect a planted 1e-4 bug in ResNet18's layer3.0.conv1.weight"
    model, images = resnet18_and_images()
    plant_wrong_conv(model, "layer3.0.conv1")
    name = "layer3.0.conv1.weight"
    ours = benchmark.pedantic(
        check_module,
        args=(model, images),
        kwargs={"parameters": name, "include_inputs": False},
        rounds=1,
        iterations=1,
    )
    double = model.double().eval()
    params = {n: p.detach().clone() for n, p in double.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in double.named_buffers()}
    weight = params[name].clone().requires_grad_()
    start = time.perf_counter()
    peer = torch.autograd.gradcheck(
        lambda w: functional_call(double, ({**params, name: w}, buffers), (images.double(),)),
        (weight,),
        fast_mode=True,
        raise_exception=False,
    )
    peer_s = time.perf_counter() - start
    benchmark.extra_info.update(ours_caught=not ours.passed, peer_caught=not peer, peer_s=peer_s)
    print(
        f"\nplanted 1e-4 bug in {name}: check_module {'caught' if not ours.passed else 'MISSED'} "
        f"it in {benchmark.stats.stats.min:.1f} s (relative error "
        f"{ours.rows[0].relative_error:.1e}); gradcheck(fast_mode=True) "
        f"{'caught' if not peer else 'missed'} it in {peer_s:.1f} s"
    )
    assert not ours.passed
