"""The property's own count of its body calls (gradcheck.property_calls): it matches the calls
the body really had, on any Hypothesis release, and keeps the shrunk failing call."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gradcheck.property_calls import COUNTED, PropertyCalls, counting_calls


def test_every_call_of_the_body_is_counted_with_its_ending() -> None:
    seen: list[int] = []

    @settings(max_examples=25, derandomize=True, database=None)
    @given(n=st.integers(0, 1000))
    def prop(n: int) -> None:
        seen.append(n)
        assume(n % 3 != 0)

    with counting_calls(prop) as calls:
        prop()
    assert calls is not None
    rejected = sum(1 for n in seen if n % 3 == 0)
    assert calls.to_dict() == {
        "examples": len(seen),
        "passing": len(seen) - rejected,
        "failing": 0,
        "invalid": rejected,
        "counted": COUNTED,
    }
    assert calls.passing >= 25 and calls.last_failing_call == ""


def test_the_last_failing_call_is_the_shrunk_example_and_fixtures_are_left_out() -> None:
    @settings(max_examples=50, derandomize=True, database=None)
    @given(v=st.floats(0, 10))
    def prop_fails(tmp: str, v: float) -> None:
        assert v < 5

    with counting_calls(prop_fails, fixtures=["tmp"]) as calls, pytest.raises(AssertionError):
        prop_fails("a fixture value")
    assert calls is not None and calls.failing >= 2  # found, shrunk, replayed
    assert calls.last_failing_call == "prop_fails(\n    v=5.0,\n)"


def test_the_body_is_put_back_and_a_plain_function_is_not_counted() -> None:
    @given(st.integers())
    def prop(n: int) -> None:
        pass

    body = prop.hypothesis.inner_test  # type: ignore[attr-defined]
    with counting_calls(prop) as calls:
        assert prop.hypothesis.inner_test is not body  # type: ignore[attr-defined]
    assert prop.hypothesis.inner_test is body  # type: ignore[attr-defined]
    assert calls is not None and calls.to_dict()["examples"] == 0
    with counting_calls(lambda: None) as none:
        assert none is None


def test_a_repr_that_raises_or_sprawls_does_not_hide_the_failure() -> None:
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    text = PropertyCalls("t").call_text({"h": Hostile(), "long": "x" * 5000})
    assert "repr raised RuntimeError" in text and len(text) < 2100


def test_pytest_fail_counts_as_a_failing_call_and_a_skip_as_none() -> None:
    @settings(max_examples=5, derandomize=True, database=None)
    @given(n=st.integers(0, 10))
    def prop(n: int) -> None:
        pytest.fail("planted")

    with counting_calls(prop) as calls, pytest.raises(pytest.fail.Exception):
        prop()
    assert calls is not None and calls.failing >= 1 and calls.passing == 0

    @given(n=st.integers(0, 10))
    def skipped(n: int) -> None:
        pytest.skip("not here")

    ends = (KeyboardInterrupt, pytest.skip.Exception)
    with counting_calls(skipped, not_counted=ends) as calls, pytest.raises(pytest.skip.Exception):
        skipped()
    assert calls is not None and calls.to_dict()["examples"] == 0
