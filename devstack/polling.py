"""Waiting for a condition in real time: one helper for the tests, the benchmarks and the
demo."""

from __future__ import annotations

import time
from collections.abc import Callable


class NotInTime(AssertionError):
    """A condition did not hold within its time."""


def wait_until(
    condition: Callable[[], object],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
    on_wait: Callable[[], None] | None = None,
    max_interval: float | None = None,
) -> None:
    """Return as soon as ``condition()`` is true; raise ``NotInTime`` naming ``what``
    after ``timeout`` seconds. ``on_wait`` runs before each check (progress output).
    With ``max_interval``, the pause grows from ``interval`` to it (a costly condition
    is checked often at first, then less)."""
    deadline = time.monotonic() + timeout
    pause = interval
    while True:
        if on_wait is not None:
            on_wait()
        if condition():
            return
        if time.monotonic() >= deadline:
            raise NotInTime(f"{what} did not hold within {timeout:g} s")
        time.sleep(pause)
        if max_interval is not None:
            pause = min(max_interval, pause * 1.5)
