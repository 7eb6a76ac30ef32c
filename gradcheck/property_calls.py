"""How many times a Hypothesis property ran, counted by the property itself.

The pytest plugin wraps a ``@given`` test's ``test.hypothesis.inner_test`` for the duration of
one test call. That attribute is the reassignable handle Hypothesis keeps for wrapping the
test body (pytest-trio and pytest-asyncio replace it the same way), and Hypothesis reads it at
call time. Every call of the body is then counted as it ends: it returned (passing), it raised
an exception (failing; the arguments of the last failing call are kept, which is the shrunk
example Hypothesis replays last), or Hypothesis rejected it (invalid: ``assume()`` was false or
the data ran out). The numbers never come from Hypothesis's statistics text, whose wording
changes between releases ("example" became "test case" in 6.159).

Stdlib only: Hypothesis is imported only once a test turns out to have the handle.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

COUNTED = "calls of the test body, every phase"
"""What the counts of :class:`PropertyCalls` count (kept in the run document)."""

NOT_COUNTED: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit, GeneratorExit)
"""Exceptions that end a test rather than a call (the plugin adds pytest's skip)."""

ARGUMENT_CHARS = 2000
"""Characters kept of each argument's ``repr`` in the failing call's text."""


def _rejections() -> tuple[type[BaseException], ...]:
    """The exceptions by which Hypothesis abandons a call without a verdict."""
    from hypothesis import errors

    names = ("UnsatisfiedAssumption", "StopTest")
    return tuple(getattr(errors, name) for name in names if hasattr(errors, name))


class PropertyCalls:
    """The calls of one property's body during one test: ``passing``, ``failing``, ``invalid``
    and ``last_failing_call`` (``name(arg=repr, ...)``, or ``""`` when none failed)."""

    def __init__(
        self,
        name: str,
        fixtures: Iterable[str] = (),
        not_counted: tuple[type[BaseException], ...] = NOT_COUNTED,
    ) -> None:
        self.name = name
        self._not_counted = not_counted
        self.passing = 0
        self.failing = 0
        self.invalid = 0
        self.last_failing_call = ""
        self._fixtures = frozenset(fixtures)

    def wrap(self, body: Callable[..., Any]) -> Callable[..., Any]:
        """``body`` wrapped so that each call is counted as it ends."""
        rejections = _rejections()

        @functools.wraps(body)
        def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                value = body(*args, **kwargs)
            except rejections:
                self.invalid += 1
                raise
            except self._not_counted:  # the test ends here (a skip, an interrupt), not a call
                raise
            except BaseException:  # an Exception, or pytest.fail()'s BaseException
                self.failing += 1
                self.last_failing_call = self.call_text(kwargs)
                raise
            self.passing += 1
            return value

        return counted

    def call_text(self, kwargs: dict[str, Any]) -> str:
        """The call as ``name(\\n    arg=repr,\\n)``, pytest fixtures left out."""
        lines = [f"{self.name}("]
        for key, value in kwargs.items():
            if key not in self._fixtures:
                lines.append(f"    {key}={_short_repr(value)},")
        return "\n".join([*lines, ")"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts: ``examples`` (all calls), ``passing``, ``failing``, ``invalid``
        and ``counted`` (what they count)."""
        return {
            "examples": self.passing + self.failing + self.invalid,
            "passing": self.passing,
            "failing": self.failing,
            "invalid": self.invalid,
            "counted": COUNTED,
        }


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as error:  # a repr that raises must not hide the failure
        text = f"<{type(value).__name__}: repr raised {type(error).__name__}>"
    if len(text) > ARGUMENT_CHARS:
        return text[:ARGUMENT_CHARS] + "..."
    return text


@contextmanager
def counting_calls(
    test: Any,
    fixtures: Iterable[str] = (),
    not_counted: tuple[type[BaseException], ...] = NOT_COUNTED,
) -> Iterator[PropertyCalls | None]:
    """While inside, count the calls of ``test``'s Hypothesis body; yields the
    :class:`PropertyCalls`, or None when ``test`` is not a ``@given`` test. ``fixtures`` are
    left out of the failing call's text; ``not_counted`` end the test, not a call. The
    original body is put back on the way out."""
    handle = getattr(test, "hypothesis", None)
    body = getattr(handle, "inner_test", None)
    if not callable(body):
        yield None
        return
    calls = PropertyCalls(getattr(body, "__name__", "test"), fixtures, not_counted)
    handle.inner_test = calls.wrap(body)  # type: ignore[union-attr]
    try:
        yield calls
    finally:
        handle.inner_test = body  # type: ignore[union-attr]
