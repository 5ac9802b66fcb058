"""The edge's client for functions served on a local socket: `make run`'s function host.

On AWS the edge invokes Lambda functions (`functions.LambdaFunctions`); `make run` runs the
same handlers in a process of their own beside moto (`devstack/function_host.py`), and the edge,
in its own process, invokes them over a Unix socket with this client: two processes, two
cores, as the edge and Lambda are on AWS. Like an invoke, a call carries the payload as JSON
with the edge's time left (`edge_contract.TIME_LEFT`), and a function's failure comes back as
an error, not an answer.

The wire is one frame per message, each way: a 4-byte big-endian length and that many bytes of
JSON. A request is `{"function": name, "payload": {...}}`; the answer `{"answer": {...}}` or
`{"error": "..."}`. A connection carries one call at a time and is kept for the next; a call
runs on in the host after its caller gave up (as an invoke does), and keeps its bulkhead slot
and its connection until the answer comes back.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Mapping
from typing import Any

from chalicelib import edge_contract as contract
from chalicelib import settings
from sip_edge.fail_fast import FunctionError, Guard, Refused, succeeded_answer, time_left

FRAME_HEADER = struct.Struct("!I")
#: Lambda's own limit on a synchronous invoke's payload and answer.
MAX_FRAME_BYTES = 6 * 1024 * 1024


def frame(message: Mapping[str, Any]) -> bytes:
    """One message as it goes on the wire."""
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME_BYTES:
        raise ValueError(f"a {len(body)}-byte message is over {MAX_FRAME_BYTES} bytes")
    return FRAME_HEADER.pack(len(body)) + body


def frame_length(header: bytes | bytearray) -> int:
    """The body length a frame header announces; ValueError past the limit."""
    (length,) = FRAME_HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise ValueError(f"a {length}-byte frame is over {MAX_FRAME_BYTES} bytes")
    return int(length)


class _Connection(asyncio.Protocol):
    """One connection to the host: frames in, each answer resolving the call waiting on it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: asyncio.Future[dict[str, Any]] | None = None
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        size = FRAME_HEADER.size
        if len(self._buffer) < size:
            return
        try:
            end = size + frame_length(self._buffer[:size])
        except ValueError as exc:
            self._fail(exc)
            return
        if len(self._buffer) < end:
            return
        body = bytes(self._buffer[size:end])
        del self._buffer[:end]
        waiting, self.waiting = self.waiting, None
        if waiting is None or waiting.done():
            self._fail(ConnectionError("an answer nobody asked for"))
            return
        try:
            waiting.set_result(json.loads(body))
        except ValueError as exc:
            waiting.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("the function host closed the connection"))

    def _fail(self, exc: BaseException) -> None:
        waiting, self.waiting = self.waiting, None
        if waiting is not None and not waiting.done():
            waiting.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()


class SocketFunctions:
    """Calls the functions served on the Unix socket `path`, at most `workers` at once (the
    same bulkhead and breakers as the other clients, `sip_edge.fail_fast.Guard`)."""

    def __init__(self, path: str, workers: int = 16, cfg: settings.Settings | None = None) -> None:
        cfg = cfg or settings.get()
        self.path = path
        self.guard = Guard(workers, cfg.sip_breaker_failures, cfg.sip_breaker_reset)
        # As LambdaFunctions' read timeout: past the request's deadline the answer is useless.
        self.timeout = cfg.aws_connect_timeout + cfg.sip_request_deadline
        self._idle: list[_Connection] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def call(self, name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        try:
            self.guard.admit(name)
        except Refused as exc:
            raise FunctionError(str(exc)) from exc
        left = time_left()
        if left is not None:  # the function stops its AWS calls where our wait ends
            payload = {**payload, contract.TIME_LEFT: round(max(0.0, left), 3)}
        try:
            data = frame({"function": name, "payload": payload})
            connection = await self._connection()
        except Exception as exc:
            self.guard.release(name, False)
            raise FunctionError(f"{name} failed: {exc!r}") from exc
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[dict[str, Any]] = loop.create_future()
        connection.waiting = answer
        assert connection.transport is not None
        connection.transport.write(data)
        timer = loop.call_later(self.timeout, _expire, answer, connection)

        # The slot and the connection are the call's, not the caller's: freed when the answer
        # is in, even after the request that made it gave up at its deadline.
        def done(future: asyncio.Future[dict[str, Any]]) -> None:
            timer.cancel()
            ok = not future.cancelled() and future.exception() is None
            if ok and connection.usable:
                self._idle.append(connection)
            self.guard.release(name, ok and _answered(future.result()))

        answer.add_done_callback(done)
        try:
            message = await asyncio.shield(answer)
        except Exception as exc:
            raise FunctionError(f"{name} failed: {exc!r}") from exc
        if "error" in message:
            raise FunctionError(f"{name}: {str(message['error'])[:200]}")
        result = message.get("answer")
        if not isinstance(result, dict):
            raise FunctionError(f"{name}: no answer")
        return result

    async def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # connections belong to the loop that made them
            self._idle.clear()
            self._loop = loop
        while self._idle:
            connection = self._idle.pop()
            if connection.usable:
                return connection
        async with asyncio.timeout(self.timeout):
            _, connection = await loop.create_unix_connection(_Connection, self.path)
        return connection

    def close(self) -> None:
        """Close the kept connections (the edge is stopping)."""
        while self._idle:
            transport = self._idle.pop().transport
            if transport is not None:
                transport.close()


def _expire(answer: asyncio.Future[dict[str, Any]], connection: _Connection) -> None:
    """No answer in time: the call fails and its connection, whose state is unknown, closes."""
    if not answer.done():
        connection._fail(TimeoutError("no answer from the function host in time"))


def _answered(message: dict[str, Any]) -> bool:
    """The host answered and the function's backend was reachable (the breaker's success)."""
    return "error" not in message and succeeded_answer(message.get("answer"))
