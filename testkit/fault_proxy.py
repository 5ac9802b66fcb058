"""A fault-injecting HTTP proxy in front of moto's server, for processes the test cannot hook
(a `python -m sip_edge` subprocess): point AWS_ENDPOINT_URL at it and switch faults per service.

The service is read from the SigV4 credential scope. Faults: `throttle` answers the service's
own throttling error, `refuse` drops the connection without an answer, `stall` holds it silent
(until the client's read timeout gives up), `slow` delays the real answer.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Each service's own throttling error (code, HTTP status), as botocore reads it.
THROTTLE_CODES = {
    "dynamodb": ("ProvisionedThroughputExceededException", 400),
    "sqs": ("RequestThrottled", 400),
    "sns": ("Throttling", 400),
    "lambda": ("TooManyRequestsException", 429),
}
_SCOPE = re.compile(r"Credential=[^/]+/\d+/[^/]+/([^/]+)/aws4_request")
STALL_SECONDS = 60.0


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.modes: dict[str, tuple[str, float]] = {}
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                proxy._handle(self)

            do_GET = do_PUT = do_DELETE = do_HEAD = do_POST  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def set(self, service: str, mode: str, seconds: float = 0.0) -> None:
        with self._lock:
            self.modes[service] = (mode, seconds)

    def clear(self) -> None:
        with self._lock:
            self.modes.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        match = _SCOPE.search(h.headers.get("Authorization") or "")
        service = match.group(1) if match else "?"
        with self._lock:
            mode = self.modes.get(service)
            if mode:
                self.counts[service] = self.counts.get(service, 0) + 1
        if mode and mode[0] == "throttle":
            self._throttled(h, service)
            return
        if mode and mode[0] == "refuse":
            h.close_connection = True
            h.connection.close()
            return
        if mode and mode[0] == "stall":
            time.sleep(STALL_SECONDS)
            h.close_connection = True
            return
        if mode and mode[0] == "slow":
            time.sleep(mode[1])
        self._forward(h, body)

    def _throttled(self, h: BaseHTTPRequestHandler, service: str) -> None:
        code, status = THROTTLE_CODES.get(service, ("Throttling", 400))
        if service == "sns":
            body = (
                f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>x"
                "</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
            ).encode()
            headers = {"Content-Type": "text/xml"}
        else:
            body = b'{"__type":"' + code.encode() + b'","message":"injected"}'
            headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": code,
                       "x-amzn-query-error": f"{code};Sender"}  # fmt: skip
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _forward(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in ("connection",)}
        conn.request(h.command, h.path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        h.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in (
                "transfer-encoding",
                "connection",
                "content-length",
                "server",
                "date",
            ):
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
        conn.close()
