"""The notebooks' accumulation rule across processes: k micro-batches, each loss divided by k,
accumulated under DDP's ``no_sync()`` on 2 gloo ranks, give every rank the gradient of the
whole batch's mean loss (:func:`gradcheck.check_distributed`, against the whole batch in one
process in float64)."""

from __future__ import annotations

from gradcheck.results import Claim
from gradcheck.scenarios.base import fact, notebook_scenario
from gradcheck.status import SKIPPED

TOPIC = "Gradient accumulation across processes: DDP, no_sync, micro-batches"
RANKS = 2
MICRO_BATCHES = 2


def verify_no_sync_accumulation(seed: int) -> list[Claim]:
    """One DDP step of 2 micro-batches on 2 ranks: the whole-batch gradient, on every rank."""
    from gradcheck.distributed import models
    from gradcheck.distributed.check import check_distributed

    inputs, targets = models.regression_batch(RANKS * MICRO_BATCHES * 2, seed)
    result = check_distributed(
        models.small_mlp,
        inputs,
        targets=targets,
        loss=models.mse,
        world_size=RANKS,
        accumulation_steps=MICRO_BATCHES,
        seed=seed,
    )
    statements = (
        (
            f"{MICRO_BATCHES} micro-batches under no_sync on {RANKS} ranks, each loss divided by "
            f"{MICRO_BATCHES}, give the whole batch's mean-loss gradient",
            not result.failed_rows and not result.inconclusive_rows and bool(result.rows),
        ),
        (
            f"after the step all {RANKS} ranks hold the same gradient, bit for bit",
            not result.rank_problems and bool(result.rows),
        ),
    )
    if result.status == SKIPPED:
        return [
            Claim(statement=s, passed=False, skipped=result.skipped_reason) for s, _ in statements
        ]
    return [fact(statement, holds, result.message) for statement, holds in statements]


SCENARIOS = (
    notebook_scenario(
        "accumulation/ddp_no_sync",
        verify_no_sync_accumulation,
        ("float64_reference",),
        "accumulation",
        "distributed",
        topic=TOPIC,
        source="basics",
    ),
)
