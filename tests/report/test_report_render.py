"""The HTML report, rendered from recorded results and read back with html.parser: every
scenario with its numbers, failures first, escaping, self-contained, charts on a log scale."""

from __future__ import annotations

import json

import pytest
from html_parsing import Page
from report_documents import HOSTILE, bench_entry, planted_model_result, run_document

from gradcheck.report.benchmarks import benchmark_groups
from gradcheck.report.document import finalize, new_document
from gradcheck.report.render import num, pct, render_report, sci


def _page(document: dict) -> Page:
    return Page(render_report(document))


def test_every_scenario_appears_with_its_stated_measured_and_oracle_numbers() -> None:
    document = run_document()
    page = _page(document)
    for scenario in document["scenarios"]:
        assert scenario["id"] in page.text
        for claim in scenario["claims"]:
            assert " ".join(claim["statement"].split()) in page.text
            for stated in claim["stated"] or ():
                assert stated in page.text
            for measured in claim["measured"] or ():
                assert num(measured) in page.text
            for check in claim["checks"]:
                worst = check["worst"]
                assert f"{num(worst['oracle'])} (|diff| {sci(worst['abs_error'])}" in page.text
    cubic = next(row for cls, row in page.rows_after("scenarios") if "a.grad == 9*a**2" in row)
    assert "36., 81." in cubic and "sympy" in cubic and "finite_difference" in cubic


def test_failures_come_first_on_the_page_and_in_every_table() -> None:
    page = _page(run_document())
    assert page.ids.index("verdict") < page.ids.index("failures") < page.ids.index("environment")
    assert page.ids.index("failures") < page.ids.index("scenarios")
    titles = page.text.split("read these first", 1)[1].split("tests ", 1)[0]
    assert (
        titles.index("planted/broken_")
        < titles.index("model/planted_mlp")
        < titles.index("test_relu_subgradient")
    )
    claims = page.rows_after("scenarios", before="properties")
    assert claims[1][0] == "failed" and claims[-1][0] != "failed"
    properties = page.rows_after("properties", before="models")
    assert properties[1][0] == "failed" and "properties/test_prop_kinks.py" in properties[1][1]
    assert "Shrunk falsifying example test_relu_subgradient( x=0.0, )" in page.text


def test_a_property_without_a_kept_count_shows_unknown_never_zero() -> None:
    document = run_document()
    document["tests"].append(
        {
            "nodeid": "properties/test_prop_x.py::test_calls_a_property_inside",
            "suite": "properties",
            "outcome": "passed",
            "duration_s": 0.1,
            "message": "",
            "reproduce": "pytest properties/test_prop_x.py",
        }
    )
    rows = _page(document).rows_after("properties", before="models")
    counted = next(row for row in rows if "test_polynomials" in row[1])
    plain = next(row for row in rows if "test_calls_a_property_inside" in row[1])
    # (class, text): verdict, test, examples, passing, failing, invalid, checks, ...
    assert counted[1].split()[2:6] == ["16", "15", "0", "1"]
    assert plain[1].split()[2:6] == ["unknown"] * 4


def test_hostile_text_is_escaped_everywhere() -> None:
    html = render_report(run_document())
    page = Page(html)
    assert not [tag for tag, _ in page.tags if tag == "script"]
    assert f"w.grad == 3 {HOSTILE}" in page.text
    assert f"tests/test_names.py::test_{HOSTILE}" in page.text
    assert f"test_backward[{HOSTILE}]" in page.text  # inside the SVG chart and the table
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_page_is_self_contained() -> None:
    page = _page(run_document())
    for tag, attributes in page.tags:
        assert tag not in ("link", "img", "iframe", "script", "object")
        assert not attributes.get("src"), (tag, attributes)
        assert str(attributes.get("href") or "#").startswith("#"), (tag, attributes)  # in-page
    assert ("style", {}) in page.tags


def test_model_section_has_the_per_tensor_table_and_a_log_scale_chart() -> None:
    page = _page(run_document())
    charts = [a for tag, a in page.tags if tag == "svg"]
    assert any("relative error per tensor" in str(a.get("aria-label")) for a in charts)
    assert any("log scale" in str(a.get("aria-label")) for a in charts)
    assert "1e-12" in page.text and "out.weight" in page.text
    rows = page.rows_after("models", before="parity")
    failed = [text for cls, text in rows if cls == "failed"]
    assert len(failed) == 1 and "out.weight" in failed[0]
    assert sum(cls == "passed" for cls, _ in rows) == 4


def test_a_pytest_report_names_the_test_that_recorded_a_result() -> None:
    document = new_document("pytest", title="pytest run", command="pytest")
    nodeid = "tests/test_planted.py::test_catches_the_planted_bug"
    document["models"].append({**planted_model_result().to_dict(), "origin": nodeid})
    document["tests"].append({"nodeid": nodeid, "outcome": "passed", "suite": "tests"})
    page = _page(finalize(document, 1.0))
    assert f"recorded in test {nodeid} (test passed)" in page.text
    assert "No failures" in page.text
    expected = ("span", {"class": "status failed, as expected"})
    assert expected in page.tags  # the planted bug the test caught, not a red failure
    document["tests"][0]["outcome"] = "failed"
    page = _page(finalize(document, 1.0))
    assert expected not in page.tags and "1 failure — read these first" in page.text


def test_formatting_helpers() -> None:
    assert sci(None) == "-" and sci("nan") == "-" and sci(0.0) == "0" and sci(1.5e-7) == "1.5e-07"
    assert pct(0.25) == "25%" and pct(4311.0) == "4.31e+03x" and pct(None) == "-"
    assert json.loads(json.dumps(run_document()))  # the document is plain JSON


def test_undecided_and_exact_rows_sit_on_the_chart_floor() -> None:
    from gradcheck.report.svg import layer_error_chart

    rows = [
        {
            "name": "a",
            "status": "inconclusive",
            "relative_error": "nan",
            "oracle": 1.0,
            "allowed": 1e-6,
        },
        {"name": "b", "status": "passed", "relative_error": 0.0, "oracle": "nan", "allowed": 1e-6},
    ]
    chart = layer_error_chart(rows)
    assert "nan" not in chart.lower()
    assert chart.count('fill="none"') == 3  # both rows hollow on the floor, and the legend
    assert "a: relative error undecided, tolerance 1.00e-06" in chart
    assert "b: relative error 0, tolerance undecided" in chart


MLP = "MLP 784-512-512-10 fwd+bwd, batch 64"
VERIFY = "verify neuron/relu_backward"


def benchmark_document() -> dict:
    """A benchmark run as ``pytest benchmarks`` records it (numbers from a real CPU run): two
    throughput benchmarks (samples/s; backward calls/s, with a hostile name, group and fact),
    check_function and its two peers on the same work, and one ungrouped benchmark."""
    document = new_document("pytest", title="pytest run", command="pytest benchmarks")
    document["benchmarks"] += [
        bench_entry("test_property_suite_examples_per_second", None, 30.0, examples_per_s=12.25),
        bench_entry(
            "test_verify_notebook_workload[gradcheck_slow-neuron/relu_backward]",
            VERIFY,
            8.32e-4,
            judge="gradcheck_slow",
            elements=2,
        ),
        bench_entry(
            "test_verify_notebook_workload[check_function-neuron/relu_backward]",
            VERIFY,
            4.62e-3,
            judge="check_function",
            elements=2,
        ),
        bench_entry(
            "test_verify_notebook_workload[gradcheck_fast-neuron/relu_backward]",
            VERIFY,
            1.04e-3,
            judge="gradcheck_fast",
            elements=2,
        ),
        bench_entry(
            f"test_notebook_step_throughput[{HOSTILE}]",
            f"notebook step {HOSTILE}",
            7.43e-5,
            scenario=HOSTILE,
            device="cpu",
            dtype="float32",
            threads=2,
            forward_s=1.2779e-5,
            backward_s=4.3054e-5,
            backward_over_forward=3.3691,
            backward_calls_per_s=17910.56,
        ),
        bench_entry(
            "test_mlp_throughput[float32-cpu]",
            MLP,
            1.33e-2,
            seed=0,
            batch=64,
            device="cpu",
            dtype="float32",
            threads=2,
            forward_s=1.0398e-3,
            backward_s=1.4844e-3,
            backward_over_forward=1.4277,
            samples_per_s=25354.58,
        ),
    ]
    return finalize(document, 60.0)


def _svg(html: str, label: str) -> str:
    """The markup of the chart whose aria-label starts with ``label``."""
    start = html.index(f'aria-label="{label}')
    return html[html.rindex("<svg", 0, start) : html.index("</svg>", start) + len("</svg>")]


def test_benchmarks_are_grouped_with_throughput_and_verification_columns() -> None:
    page = _page(benchmark_document())
    rows = page.rows_after("benchmarks", before="tests")
    groups = [text for cls, text in rows if cls == "group"]
    assert [g.rsplit(" ", 2)[0] for g in groups] == [
        MLP,
        f"notebook step {HOSTILE}",
        VERIFY,
        "(no group)",
    ]  # throughput first, then verification, then the rest
    headers = [text for cls, text in rows if text.startswith("benchmark ")]
    assert "rate forward backward backward / forward" in headers[0]
    assert "judge time / reference" in headers[1]
    mlp = next(text for _, text in rows if text.startswith("test_mlp_throughput"))
    assert "25,355 samples/s 1.04 ms 1.48 ms 1.43x" in mlp
    assert "batch=64; device=cpu; dtype=float32; seed=0; threads=2" in mlp  # shown once
    step = next(text for _, text in rows if text.startswith("test_notebook_step"))
    assert "17,911 backward calls/s 12.8 µs 43.1 µs 3.37x" in step
    verify = [text for _, text in rows if text.startswith("test_verify")]
    assert "check_function 1x the reference" in verify[0]  # the reference comes first
    # the peers' mean over the reference's, computed by the report whatever order they ran in
    assert "gradcheck_fast 0.225x 4.44x faster than check_function" in verify[1]
    assert "gradcheck_slow 0.18x 5.55x faster than check_function" in verify[2]
    for text in [mlp, step, *verify]:  # what has a column is not repeated in "extra"
        for key in ("forward_s", "samples_per_s", "calls_per_s", "judge=", "time_vs_check"):
            assert key not in text, (key, text)
    ungrouped = next(text for _, text in rows if text.startswith("test_property_suite"))
    assert "examples_per_s=12.25" in ungrouped


def test_a_whole_model_group_divides_the_capped_peers_estimate_by_check_module() -> None:
    model = "verify ResNet18"
    document = new_document("pytest", title="pytest run", command="pytest benchmarks")
    document["benchmarks"] += [
        bench_entry(
            "test_peer_fast_gradcheck_resnet18_per_tensor",
            model,
            400.0,  # capped per tensor; the whole work is estimated at 1900 s
            judge="gradcheck_fast",
            full_run_s=1900.0,
            one_forward_s=0.02,  # a forward time alone does not make a throughput row
        ),
        bench_entry("test_check_module_resnet18", model, 20.0, judge="check_module", rows=63),
    ]
    (group,) = benchmark_groups(document["benchmarks"])
    assert (group["throughput"], group["verification"]) == (False, True)
    assert group["reference_judge"] == "check_module"
    reference, peer = group["rows"]
    assert reference["reference"] and reference["versus"] == "1x"
    assert peer["time_vs_reference"] == pytest.approx(95.0)
    assert peer["versus_note"] == "95x slower than check_module"
    rows = _page(finalize(document, 1.0)).rows_after("benchmarks", before="tests")
    assert any("check_module 1x the reference" in text for _, text in rows)


def test_backward_over_forward_chart_has_a_bar_per_throughput_benchmark_and_the_2x_line() -> None:
    html = render_report(benchmark_document())
    chart = Page(_svg(html, "backward time over forward time"))
    assert "2x: a well-implemented backward" in chart.text
    assert "1.43x" in chart.text and "3.37x" in chart.text
    assert "test_mlp_throughput[float32-cpu]" in chart.text
    assert "gradcheck_slow" not in chart.text and "property_suite" not in chart.text
    bars = [a for tag, a in chart.tags if tag == "rect"]
    (reference,) = [a for tag, a in chart.tags if tag == "line" and a.get("stroke-dasharray")]
    two_x = float(str(reference["x1"])) - float(str(bars[0]["x"]))
    lengths = [float(str(bar["width"])) / two_x for bar in bars]
    assert [round(2 * length, 2) for length in lengths] == [1.43, 3.37]  # bars measured in 2x
    mean_chart = Page(_svg(html, "mean time per benchmark round"))
    assert "gradcheck_slow" in mean_chart.text  # the mean-time chart keeps every benchmark
    assert [tag for tag, _ in Page(html).tags].count("svg") == 2


def test_hostile_benchmark_names_show_as_text() -> None:
    html = render_report(benchmark_document())
    page = Page(html)
    assert not [tag for tag, _ in page.tags if tag == "script"]
    assert "<script" not in html
    assert f"test_notebook_step_throughput[{HOSTILE}]" in page.text  # table and both charts
    assert f"notebook step {HOSTILE}" in page.text and f"scenario={HOSTILE}" in page.text
    chart = _svg(html, "backward time over forward time")
    assert "test_notebook_step_throughput[&lt;script&gt;alert(1)&lt;/script&gt;]" in chart


def test_the_report_says_where_torch_lands_against_2x_per_kind_of_benchmark() -> None:
    page = Page(render_report(benchmark_document()))
    lands = page.text.split("Where torch lands.")[1:]
    assert len(lands) == 2  # samples/s (the MLP), then backward calls/s (the notebook step)
    assert (
        "measured in samples/s (1): backward takes 1.43x to 1.43x its forward, median 1.43x, "
        "below the 2x of a well-implemented backward" in lands[0]
    )
    assert "backward calls/s (1)" in lands[1] and "median 3.37x, above the 2x" in lands[1]
    assert "Where torch lands" not in Page(render_report(run_document())).text


def test_the_2x_chart_is_drawn_only_for_throughput_benchmarks() -> None:
    from gradcheck.report.svg import backward_forward_chart, fit_label

    html = render_report(run_document())  # two benchmarks without a forward/backward split
    assert "well-implemented backward" not in Page(html).text
    assert backward_forward_chart([]) == ""
    long_name = "test_" + "x" * 80 + HOSTILE
    entry = bench_entry(long_name, HOSTILE, 1.0, backward_over_forward=2.5)
    chart = backward_forward_chart([entry])
    assert "<script" not in chart and "</script" not in chart
    assert f"<title>{long_name.replace('<', '&lt;').replace('>', '&gt;')}</title>" in chart
    shown = fit_label(long_name, 40)
    assert len(shown) == 40 and shown.startswith("test_x") and shown.endswith("</script>")
    assert fit_label("short", 40) == "short"


def test_benchmarks_in_a_group_sort_by_the_numbers_in_their_names() -> None:
    from gradcheck.report.benchmarks import benchmark_groups

    names = [
        f"test_resnet18_throughput[b{b}-{side}px]"
        for b, side in ((32, 64), (8, 224), (1, 64), (8, 64))
    ]
    entries = [{"name": n, "group": "ResNet18", "stats": {"mean": 1.0}} for n in names]
    rows = benchmark_groups(entries)[0]["rows"]
    assert [row["name"] for row in rows] == [names[2], names[3], names[1], names[0]]
