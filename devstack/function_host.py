"""`make run`'s Lambda: app.py's edge functions served on a Unix socket to an edge process.

On AWS the edge (an ECS task) invokes Lambda functions; `make run` runs the edge in a process
of its own and the functions here, in the process that holds moto, so that their DynamoDB
calls keep devstack's in-process path (`moto_local.direct_dynamodb`) and the two halves use
two cores. The edge's client and the wire format are `sip_edge.function_socket`: one call per
connection at a time, one thread per connection here (the edge opens at most
SIP_MAX_INFLIGHT_CALLS). A handler's exception goes back as an error, as Lambda reports a
function error; the connection stays up.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from chalicelib import edge_contract
from chalicelib.observability import logger
from sip_edge.function_socket import FRAME_HEADER, frame, frame_length


class _Connection(socketserver.BaseRequestHandler):
    """One edge connection: frames in, one call each, its answer out, until the edge closes."""

    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        buffer = bytearray()
        size = FRAME_HEADER.size
        while not self.server.closing:
            chunk = sock.recv(65536)
            if not chunk:
                return
            buffer += chunk
            while len(buffer) >= size:
                try:
                    end = size + frame_length(buffer[:size])
                except ValueError as exc:  # a frame too big: the stream cannot be followed
                    logger.warning("function host: %s; connection closed", exc)
                    return
                if len(buffer) < end:
                    break
                body = bytes(buffer[size:end])
                del buffer[:end]
                try:
                    sock.sendall(frame(self.server.invoke(body)))
                except (BrokenPipeError, ConnectionResetError):
                    return  # the edge gave up on this call (its timeout): as an invoke's answer
                    # nobody waits for any more, it goes nowhere


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    closing = False
    # The edge opens its connections as calls come (up to SIP_MAX_INFLIGHT_CALLS at once); a
    # full backlog fails a non-blocking connect on a Unix socket instead of making it wait.
    request_queue_size = 256

    def __init__(self, path: str, handlers: Callable[[str], Any]) -> None:
        super().__init__(path, _Connection)
        self.handler_of = handlers
        self.calls: Counter[str] = Counter()  # by function (the benchmarks read it)

    def invoke(self, body: bytes) -> dict[str, Any]:
        """Run one call: {"answer": ...} or {"error": ...}, never an exception."""
        try:
            request = json.loads(body)
            name = request["function"]
            if name not in edge_contract.FUNCTIONS:
                return {"error": f"no function {name!r}"}
            self.calls[name] += 1
            return {"answer": self.handler_of(name)(request["payload"], None)}
        except Exception as exc:  # a function error, as Lambda reports one
            logger.exception("function failed")
            return {"error": f"{type(exc).__name__}: {exc}"}


class FunctionHost:
    """Serves app.py's edge functions on the Unix socket `path` until `stop`."""

    def __init__(self, path: str) -> None:
        import app

        self.path = path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a socket left by a stack that was killed
        self._server = _Server(path, lambda name: getattr(app, name))
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="function-host", daemon=True
        )
        self._thread.start()

    @property
    def calls(self) -> Counter[str]:
        """Calls served so far, by function."""
        return self._server.calls

    def stop(self) -> None:
        self._server.closing = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
