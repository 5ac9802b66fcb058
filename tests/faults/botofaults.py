"""Fault injection at the boto3 wire: throttle, refuse, stall or slow one AWS service.

A `before-send` hook on the process's shared clients (`chalicelib.aws`) answers in place of the
service, so everything above the HTTP layer is real: botocore's retry mode, its timeouts, error
parsing, and the project's own handling. A stall sleeps as long as the client's read timeout
would let a silent server hold it (forever, if it set none) and then raises what botocore raises.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

from chalicelib import aws
from chalicelib.resilience import check_deadline
from devstack import moto_local
from testkit.fault_proxy import THROTTLE_CODES

STALL_CAP = 120.0  # a "forever" that still ends a broken test run


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def error_response(service: str, code: str, status: int) -> AWSResponse:
    """What the service answers for an error `code`, in its own protocol."""
    if service == "sns":
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
            f"<Message>injected</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
        ).encode()
        headers = {"Content-Type": "text/xml"}
    elif service == "lambda":
        body = json.dumps({"message": "injected", "Type": "User"}).encode()
        headers = {"x-amzn-ErrorType": code, "Content-Type": "application/json"}
    else:
        body = json.dumps({"__type": f"com.amazonaws.{service}#{code}", "message": "injected"})
        body = body.encode()
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-query-error": code}
    return AWSResponse("https://fault.invalid/", status, headers, _Raw(body))


def json_response(payload: dict[str, Any]) -> AWSResponse:
    headers = {"Content-Type": "application/x-amz-json-1.0"}
    return AWSResponse("https://fault.invalid/", 200, headers, _Raw(json.dumps(payload).encode()))


class Faults:
    """The faults currently switched on, by service; thread-safe, switched from tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._modes: dict[str, tuple[str, float, frozenset[str] | None]] = {}
        self._custom: dict[tuple[str, str], Callable[[Any], AWSResponse | None]] = {}
        self._hooked: set[int] = set()
        self.calls: dict[str, int] = {}

    # --- switching -------------------------------------------------------------------------

    def set(self, service: str, mode: str, seconds: float = 0.0, operations: Any = None) -> None:
        """mode: throttle | refuse | stall | slow (seconds of delay, then the real answer)."""
        assert mode in ("throttle", "refuse", "stall", "slow"), mode
        ops = frozenset(operations) if operations else None
        with self._lock:
            self._modes[service] = (mode, seconds, ops)
        self.hook(service)

    def answer(self, service: str, operation: str, fn: Callable[[Any], AWSResponse | None]) -> None:
        """Answer `operation` with `fn(request)` (None lets the call through)."""
        with self._lock:
            self._custom[(service, operation)] = fn
        self.hook(service)

    def clear(self, service: str | None = None) -> None:
        with self._lock:
            if service is None:
                self._modes.clear()
                self._custom.clear()
            else:
                self._modes.pop(service, None)
                self._custom = {k: v for k, v in self._custom.items() if k[0] != service}

    # --- the hook ----------------------------------------------------------------------------

    def hook(self, service: str, *extra_clients: Any) -> None:
        """Attach to the shared client (and resource client) of `service`, and to clients of
        its own a component made (the edge's Lambda invoke client); idempotent."""
        clients = [aws.client(service), *extra_clients]
        if service == "dynamodb":
            clients.append(aws.resource(service).meta.client)
            # Faults answer at `before-send`, where botocore retries them: the local stack's
            # direct route to moto answers before that (the `aws` fixture turns it back on).
            moto_local.direct(False)
        for c in clients:
            if id(c) in self._hooked:
                continue
            self._hooked.add(id(c))
            read_timeout = c.meta.config.read_timeout
            c.meta.events.register_first(
                f"before-send.{c.meta.service_model.endpoint_prefix}",
                lambda request, event_name, _rt=read_timeout, _svc=service, **_: self._on_send(
                    _svc, request, event_name, _rt
                ),
            )

    def _on_send(
        self, service: str, request: Any, event_name: str, read_timeout: float | None
    ) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        with self._lock:
            mode = self._modes.get(service)
            custom = self._custom.get((service, operation))
            if mode or custom:
                self.calls[service] = self.calls.get(service, 0) + 1
        if custom is not None:
            answer = custom(request)
            if answer is not None:
                return _instead(request, answer)
        if mode is None or (mode[2] is not None and operation not in mode[2]):
            return None
        kind, seconds, _ = mode
        check_deadline()  # as for a real call: the deadline is checked before the network
        if kind == "throttle":
            code, status = THROTTLE_CODES[service]
            return _instead(request, error_response(service, code, status))
        if kind == "refuse":
            raise EndpointConnectionError(endpoint_url=request.url)
        if kind == "stall":
            time.sleep(min(read_timeout or STALL_CAP, STALL_CAP))  # the stall is the fault
            raise ReadTimeoutError(endpoint_url=request.url)
        time.sleep(seconds)  # slow: late, then the real answer
        return None


def _instead(request: Any, answer: AWSResponse) -> AWSResponse:
    """Every before-send handler runs, even after one answered: point the request nowhere so
    that moto's (in-process mode) does not carry it out behind the injected answer."""
    request.url = "https://fault.invalid/"
    return answer


@contextmanager
def faults() -> Iterator[Faults]:
    f = Faults()
    try:
        yield f
    finally:
        f.clear()
