"""Fail-fast for the edge: each request's deadline, a bulkhead on function calls and a circuit
breaker per function, so a slow or failing backend costs phones fast 503s, never silence.

The deadline travels in a context variable: set when a request starts, read by the function
client (which hands the time left to the AWS calls it makes), cleared once the request's final
response is sent, so the work that follows it (NOTIFYs, storing the dialog) is not cut short.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: monotonic time by which the current request must have its final response (None: no request)
DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline", default=None)


def time_left() -> float | None:
    deadline = DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


class FunctionError(RuntimeError):
    """A function could not be called or failed; the edge answers 500/503 and carries on."""


def succeeded_answer(answer: Any) -> bool:
    """No `unavailable` error in a function's answer (its backend was reachable): a success
    for the function's breaker."""
    return not (
        isinstance(answer, dict) and (answer.get("error") or {}).get("code") == "unavailable"
    )


class Refused(RuntimeError):
    """A call the guard did not let through (the function client reports it as FunctionError)."""


class Overloaded(Refused):
    """Every slot of the bulkhead is taken: answer 503 now rather than queue."""


class CircuitOpen(Refused):
    """The function failed repeatedly; it is not called until its breaker lets a probe through."""


@dataclass
class _Breaker:
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False


class Guard:
    """The bulkhead (at most `max_inflight` calls running, counted until their thread ends,
    even when the request that made them gave up) and one breaker per function."""

    def __init__(
        self,
        max_inflight: int,
        breaker_failures: int,
        breaker_reset: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_inflight = max_inflight
        self.clock = clock  # monotonic seconds; tests move it to let a breaker's reset lapse
        self.breaker_failures = breaker_failures
        self.breaker_reset = breaker_reset
        self.inflight = 0
        self._breakers: dict[str, _Breaker] = {}
        self._lock = threading.Lock()
        self.stats = {"overloaded": 0, "circuit_open": 0}

    def admit(self, name: str) -> None:
        """Take a slot for a call of `name`, or raise Overloaded / CircuitOpen."""
        now = self.clock()
        with self._lock:
            breaker = self._breakers.setdefault(name, _Breaker())
            if breaker.failures >= self.breaker_failures:
                if now < breaker.open_until or breaker.probing:
                    self.stats["circuit_open"] += 1
                    raise CircuitOpen(f"{name}: circuit open after {breaker.failures} failures")
                breaker.probing = True  # half-open: this call is the probe
            if self.inflight >= self.max_inflight:
                breaker.probing = False
                self.stats["overloaded"] += 1
                raise Overloaded(f"{name}: {self.inflight} calls in flight")
            self.inflight += 1

    def release(self, name: str, ok: bool) -> None:
        """The call's thread ended; `ok` is whether the backend answered."""
        with self._lock:
            self.inflight -= 1
            breaker = self._breakers.setdefault(name, _Breaker())
            breaker.probing = False
            if ok:
                breaker.failures = 0
                return
            breaker.failures += 1
            if breaker.failures >= self.breaker_failures:
                breaker.open_until = self.clock() + self.breaker_reset

    def is_open(self, name: str) -> bool:
        with self._lock:
            breaker = self._breakers.get(name)
            return breaker is not None and breaker.failures >= self.breaker_failures
