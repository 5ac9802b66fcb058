"""Deadlines for AWS calls and the one rule for what counts as "AWS is unavailable".

A request (REST route or edge function call) runs under a `deadline`: every AWS call it makes
checks the time left before each attempt (a botocore hook that `chalicelib.aws` installs), so a
slow or stalled backend costs one request its time, not a pile of retries. A transient AWS
failure (throttling, 5xx, timeout, refused connection, deadline passed) becomes the `unavailable`
error: 503 with a jittered Retry-After, for the phone and the REST client alike.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from chalicelib import settings

THROTTLING_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "Throttling",
     "ThrottledException", "RequestThrottled", "RequestLimitExceeded", "TooManyRequestsException",
     "RequestThrottledException", "SlowDown", "LimitExceededException",
     "TransactionInProgressException", "ServiceUnavailable", "InternalServerError",
     "InternalFailure", "ServiceException", "KMSThrottlingException"}
)  # fmt: skip
_local = threading.local()


class DeadlineExceeded(BotoCoreError):
    fmt = "the request's deadline passed before this AWS call"


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Run the block with at most `seconds` for its AWS calls (nested deadlines keep the
    earliest)."""
    previous = getattr(_local, "deadline", None)
    ends = time.monotonic() + seconds
    _local.deadline = ends if previous is None else min(previous, ends)
    try:
        yield
    finally:
        _local.deadline = previous


@contextmanager
def within_time_left(event: Any, key: str = "time_left") -> Iterator[None]:
    """Run a function's handler within the time its caller still waits (`event[key]` seconds,
    when the caller said); a malformed value is ignored rather than trusted."""
    left = event.get(key) if isinstance(event, dict) else None
    if isinstance(left, int | float) and not isinstance(left, bool):
        with deadline(max(0.0, float(left))):
            yield
    else:
        yield


def remaining() -> float | None:
    deadline = getattr(_local, "deadline", None)
    return None if deadline is None else deadline - time.monotonic()


def check_deadline(**_: Any) -> None:
    """botocore `before-send` hook: no attempt starts once the deadline has passed."""
    left = remaining()
    if left is not None and left <= 0:
        raise DeadlineExceeded()


def is_unavailable(exc: BaseException) -> bool:
    """A failure worth a 503 and a retry later: throttled, 5xx, timed out or unreachable."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error.get("Code") in THROTTLING_CODES or status >= 500 or status == 429
    return isinstance(
        exc,
        DeadlineExceeded
        | ReadTimeoutError
        | ConnectTimeoutError
        | EndpointConnectionError
        | ConnectionClosedError,
    )


def retry_after(cfg: settings.Settings | None = None) -> str:
    """Seconds for Retry-After, jittered so that refused clients do not come back together."""
    cfg = cfg or settings.get()
    return str(cfg.retry_after + random.randint(0, max(0, cfg.retry_after_jitter)))
