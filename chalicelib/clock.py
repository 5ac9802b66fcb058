"""The wall clock of the domain modules, in one place so tests can move time forward."""

from __future__ import annotations

import time
from datetime import UTC, datetime

_offset = 0.0


def now() -> float:
    """Seconds since the epoch (plus the test offset)."""
    return time.time() + _offset


def now_int() -> int:
    return int(now())


def iso(epoch: int | float) -> str:
    """ISO-8601 UTC rendering of an epoch time, as the REST API answers it."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def advance(seconds: float) -> None:
    """Move the domain clock forward (tests only: codes expire, rate windows slide)."""
    global _offset
    _offset += seconds


def reset() -> None:
    global _offset
    _offset = 0.0
