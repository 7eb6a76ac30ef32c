"""A distributed check in the report's "low precision, compiled and distributed" section,
rendered from a real check_distributed result (two ranks whose comm hook never communicates:
they disagree with each other and with the whole batch): its facts (ranks, dtypes, loss), the
rank problems, the per-parameter table, and the same result through the document's JSON, its
failures, counts, shape check and the merge, and the pytest plugin."""

from __future__ import annotations

import json

import pytest
import ranked_models as planted
from html_parsing import Page

import gradcheck
from gradcheck.distributed_results import DistributedCheckResult
from gradcheck.report.document import RUN_ORIGIN, failures, finalize, new_document, summarise
from gradcheck.report.merge import merge_documents
from gradcheck.report.render import render_report
from gradcheck.report.shape import check_run_document


@pytest.fixture(scope="module")
def result() -> DistributedCheckResult:
    inputs, targets = planted.batch()
    return gradcheck.check_distributed(
        planted.mlp,
        inputs,
        targets=targets,
        loss=planted.mse,
        comm_hook=planted.local_only_hook,
        accumulation_steps=2,
    )


@pytest.fixture(scope="module")
def document(result: DistributedCheckResult) -> dict:
    document = new_document("run", title="distributed", command="gradcheck run")
    document["environment"] = {"python": "CPython 3.11.7", "torch": "2.14.1", "devices": ["cpu"]}
    document["references"].append({**result.to_dict(), "origin": RUN_ORIGIN})
    return finalize(document, 2.0)


def test_the_check_shows_its_ranks_rank_problems_and_rows(document: dict) -> None:
    html = render_report(document)
    text = Page(html).text
    label = "Sequential: DDP on 2 gloo ranks, 2 micro-batches, comm hook local_only_hook (float32)"
    assert label in text
    assert "ranks 2 gloo ranks, DDP, 2 micro-batch(es) each, comm hook local_only_hook" in text
    assert "step float32, gradients sent in float32, eval mode" in text
    assert "loss mse (mean over the batch), step default_step" in text
    assert "rank 1 0.weight : differs from rank 0's by" in text
    assert "4 rank problem(s)" in text
    block = html[html.index('<details class="model reference failed"') :]
    assert block.count('<tr class="failed">') == 4  # one row per parameter, all failed
    assert "<svg" in block.split("</details>", 1)[0]  # the error chart


def test_the_section_goes_through_json_failures_counts_shape_and_merge(
    document: dict, result: DistributedCheckResult
) -> None:
    again = json.loads(json.dumps(document))
    assert render_report(again) == render_report(document)
    assert DistributedCheckResult.from_dict(again["references"][0]) == result
    found = failures(again)
    assert [(f["section"], f["status"]) for f in found] == [
        ("low precision, compiled and distributed", "failed")
    ]
    assert found[0]["reproduce"].startswith("gradcheck.check_distributed(mlp, inputs")
    assert summarise(again)["reference_rows"] == {"failed": 4}
    check_run_document(again, "again.json")
    matrix = merge_documents([again, json.loads(json.dumps(document))], ["a.json", "b.json"])
    keys = [row["key"] for row in matrix["rows"] if row["section"] == "references"]
    label = "Sequential: DDP on 2 gloo ranks, 2 micro-batches, comm hook local_only_hook (float32)"
    assert f"{label} (cpu) :: parameter 0.weight" in keys
    assert len(keys) == 4


def test_the_pytest_plugin_records_a_distributed_check(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_ddp="""
        import torch
        import gradcheck

        def make():
            return torch.nn.Linear(3, 2)

        def test_ddp():
            inputs = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
            assert gradcheck.check_distributed(make, inputs).passed
        """
    )
    outcome = pytester.runpytest_subprocess(
        "--gradcheck-report", "out/report.html", "-p", "no:cacheprovider"
    )
    outcome.assert_outcomes(passed=1)
    saved = json.loads((pytester.path / "out" / "report.json").read_text())
    (entry,) = saved["references"]
    assert entry["kind"] == "distributed" and entry["status"] == "passed"
    assert entry["origin"] == "test_ddp.py::test_ddp"
