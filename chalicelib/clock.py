"""The wall clock of the domain modules, in one place so tests can move time forward.

`offset` is added to the system time: always 0 in production; tests move it (tests/conftest.py).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

offset = 0.0


def now() -> float:
    """Seconds since the epoch (plus the test offset)."""
    return time.time() + offset


def now_int() -> int:
    return int(now())


def iso(epoch: int | float) -> str:
    """ISO-8601 UTC rendering of an epoch time, as the REST API answers it."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
