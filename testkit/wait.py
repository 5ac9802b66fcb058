"""Waiting for something to happen, instead of sleeping and hoping it did.

Tests poll the event they wait for (a message arrived, a thread took its step, a process wrote
its line) at a short interval; the timeout only bounds a failing test, it is never the check.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def seconds_until(
    predicate: Callable[[], object], timeout: float, interval: float = 0.02
) -> float | None:
    """Seconds until `predicate()` held (checked at once, then every `interval`), or None if it
    did not within `timeout`."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            return None
        time.sleep(interval)


def wait_until(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02
) -> bool:
    """Whether `predicate()` held within `timeout` (polled every `interval`)."""
    return seconds_until(predicate, timeout, interval) is not None
