"""A tiny SIP user agent for edge tests: raw requests over real UDP/TCP sockets, digest answers.

It parses what it receives with the project's own strict parser, so anything malformed the edge
sends fails the test.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from chalicelib import digest
from sip_edge.sip.message import Request, Response, make_response
from sip_edge.sip.parser import ParseError, StreamParser, parse_datagram


class SipClient:
    def __init__(
        self, server: tuple[str, int], transport: str = "udp", host: str = "127.0.0.1"
    ) -> None:
        self.server = server
        self.transport = transport
        self.host = host  # any 127.0.0.0/8 address: a client of its own on loopback
        if transport == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((host, 0))
        else:
            self.sock = socket.create_connection(server, source_address=(host, 0))
            self.stream = StreamParser()
        self.sock.settimeout(5)
        self.port = self.sock.getsockname()[1]
        self.call_id = secrets.token_hex(8)
        self.from_tag = secrets.token_hex(4)
        self.cseq = 0
        self.backlog: list[Request | Response] = []
        self.unparseable: list[bytes] = []

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, data: bytes) -> None:
        if self.transport == "udp":
            self.sock.sendto(data, self.server)
        else:
            self.sock.sendall(data)

    def _read(self, timeout: float) -> Request | Response | None:
        self.sock.settimeout(timeout)
        try:
            if self.transport == "udp":
                data, _ = self.sock.recvfrom(262144)
                try:
                    msg = parse_datagram(data)
                except ParseError:
                    self.unparseable.append(data)  # e.g. a 400 echoing the bad CSeq we sent
                    return None
                return msg if isinstance(msg, Request | Response) else None
            while True:
                for event in self.stream.feed(b""):
                    if isinstance(event, Request | Response):
                        return event
                chunk = self.sock.recv(65536)
                if not chunk:
                    return None
                for event in self.stream.feed(chunk):
                    if isinstance(event, Request | Response):
                        self.backlog.append(event)
                if self.backlog:
                    return self.backlog.pop(0)
        except TimeoutError:
            return None

    def receive(
        self,
        predicate: Callable[[Request | Response], bool] = lambda m: True,
        timeout: float = 5.0,
    ) -> Request | Response | None:
        """The next message matching `predicate` (others stay queued)."""
        deadline = time.monotonic() + timeout
        for i, msg in enumerate(self.backlog):
            if predicate(msg):
                return self.backlog.pop(i)
        while time.monotonic() < deadline:
            read = self._read(max(0.01, deadline - time.monotonic()))
            if read is None:
                continue
            if predicate(read):
                return read
            self.backlog.append(read)
        return None

    def response(self, method: str, timeout: float = 5.0) -> Response | None:
        def final(m: Request | Response) -> bool:
            method_of = (m.headers.get("CSeq") or "").split()[-1:]
            return isinstance(m, Response) and method_of == [method] and m.status >= 200

        return cast(Response | None, self.receive(final, timeout))

    def notify(self, timeout: float = 5.0, answer: int | None = 200) -> Request | None:
        msg = cast(
            Request | None,
            self.receive(lambda m: isinstance(m, Request) and m.method == "NOTIFY", timeout),
        )
        if msg is not None and answer is not None:
            self.answer(msg, answer)
        return msg

    def answer(self, request: Request, status: int) -> None:
        self.send_raw(make_response(request, status).to_bytes())

    def request(
        self,
        method: str,
        uri: str,
        *,
        from_uri: str,
        to: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        call_id: str | None = None,
    ) -> bytes:
        self.cseq += 1
        via_t = "UDP" if self.transport == "udp" else "TCP"
        branch = "z9hG4bK" + secrets.token_hex(6)
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/{via_t} {self.host}:{self.port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <{from_uri}>;tag={self.from_tag}",
            f"To: {to or '<' + from_uri + '>'}",
            f"Call-ID: {call_id or self.call_id}",
            f"CSeq: {self.cseq} {method}",
            f"Contact: <sip:{self.host}:{self.port};transport={self.transport}>",
            *[f"{k}: {v}" for k, v in headers],
            f"Content-Length: {len(body)}",
            "",
            "",
        ]
        data = "\r\n".join(lines).encode() + body
        self.send_raw(data)
        return data

    def authorized(
        self,
        method: str,
        uri: str,
        challenge: Response,
        *,
        username: str,
        password: str,
        algorithm: str = "SHA-256",
        **kwargs: Any,
    ) -> bytes:
        """Repeat a request with an Authorization answering `challenge`."""
        for value in challenge.headers.get_all("WWW-Authenticate"):
            params = digest.parse_params(value)
            if params.get("algorithm", "MD5").upper() == algorithm:
                break
        else:
            raise AssertionError(f"no {algorithm} challenge")
        realm, nonce = params["realm"], params["nonce"]
        ha1 = digest.ha1(algorithm, username, realm, password)
        cnonce, nc = secrets.token_hex(4), "00000001"
        response = digest.expected_response(
            algorithm, ha1, method, uri, nonce, qop="auth", nc=nc, cnonce=cnonce
        )
        auth = (
            f'Digest username="{username}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{response}", algorithm={algorithm}, qop=auth, nc={nc}, cnonce="{cnonce}"'
        )
        headers = [*kwargs.pop("headers", []), ("Authorization", auth)]
        return self.request(method, uri, headers=headers, **kwargs)
