"""Hand every result the public check functions produce to whoever listens.

The pytest plugin and ``gradcheck run`` listen (:func:`listening`) to collect results for the
report. The public checks are wrapped with :func:`recorded`: when one returns at the outermost
level, its result is published; when it raises an error that carries a result
(:class:`~gradcheck.errors.GradientMismatch`), that result is published before the error
propagates. Nested checks (``run_scenario`` calling ``check_function``) publish only the
outermost result, which contains the inner ones. With no listener, publishing costs one
emptiness test, and this module imports nothing beyond the standard library.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

Listener = Callable[[Any], None]
F = TypeVar("F", bound=Callable[..., Any])

_listeners: list[Listener] = []
_call_depth = threading.local()


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call ``listener(result)`` for every result published inside the ``with`` block."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def publish(result: Any) -> None:
    """Hand ``result`` to every listener (none: nothing happens)."""
    for listener in tuple(_listeners):
        listener(result)


def recorded(function: F) -> F:
    """Publish what ``function`` returns (or the result its error carries) when it is the
    outermost recorded call on this thread."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        depth = getattr(_call_depth, "value", 0)
        _call_depth.value = depth + 1
        try:
            result = function(*args, **kwargs)
        except Exception as error:
            carried = getattr(error, "result", None)
            if depth == 0 and _listeners and carried is not None:
                publish(carried)
            raise
        finally:
            _call_depth.value = depth
        if depth == 0 and _listeners:
            publish(result)
        return result

    return wrapper  # type: ignore[return-value]
