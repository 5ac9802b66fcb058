"""A scripted SIP peer on a loopback UDP socket: receive requests, answer them, send NOTIFYs."""

from __future__ import annotations

import re
import secrets
import socket
import time
from dataclasses import dataclass, field


@dataclass
class SipMessage:
    """A parsed SIP request or response; headers keep wire order, names and duplicates."""

    start_line: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes
    source: tuple[str, int] = ("", 0)
    answered: bytes | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, raw: bytes, source: tuple[str, int] = ("", 0)) -> SipMessage:
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("utf-8", errors="replace").split("\r\n")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and headers:  # folded continuation
                name, value = headers[-1]
                headers[-1] = (name, value + " " + line.strip())
            elif ":" in line:
                name, value = line.split(":", 1)
                headers.append((name.strip(), value.strip()))
        return cls(lines[0], headers, body, raw, source)

    @property
    def is_request(self) -> bool:
        return not self.start_line.startswith("SIP/2.0 ")

    @property
    def method(self) -> str:
        return self.start_line.split(" ", 1)[0] if self.is_request else self.cseq_method

    @property
    def request_uri(self) -> str:
        return self.start_line.split(" ")[1]

    @property
    def status(self) -> int:
        return int(self.start_line.split(" ")[1])

    @property
    def cseq_method(self) -> str:
        return (self.header("CSeq") or " ").split()[-1]

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def transaction_key(self) -> tuple[str, str]:
        via = self.header("Via") or ""
        match = re.search(r"branch=([^;,\s]+)", via)
        return (match.group(1) if match else via, self.header("CSeq") or "")


def uri_of(name_addr: str) -> str:
    """The URI inside a Contact/From/To value."""
    match = re.search(r"<([^>]*)>", name_addr)
    return match.group(1) if match else name_addr.split(";")[0].strip()


def tag_of(name_addr: str) -> str | None:
    rest = name_addr.split(">", 1)[1] if ">" in name_addr else name_addr
    match = re.search(r";\s*tag=([^;\s]+)", rest)
    return match.group(1) if match else None


class ScriptedPeer:
    """The far end for one client: a test reads requests and answers them by hand."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.host, self.port = self.sock.getsockname()
        self.received: list[SipMessage] = []
        self._answered: dict[tuple[str, str], bytes] = {}
        self._cseq = 100

    @property
    def uri(self) -> str:
        return f"sip:{self.host}:{self.port};transport=udp"

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> ScriptedPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def receive(self, timeout: float) -> SipMessage | None:
        """Next new message; retransmissions of answered requests get the same answer again."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            self.sock.settimeout(remaining)
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                return None
            if not data.strip():  # keep-alive
                continue
            msg = SipMessage.parse(data, source)
            previous = self._answered.get(msg.transaction_key()) if msg.is_request else None
            if previous is not None:
                self.sock.sendto(previous, source)
                continue
            self.received.append(msg)
            return msg
        return None

    def expect(self, method: str, timeout: float = 10.0, status: int | None = None) -> SipMessage:
        """The next request of `method` (or response to it, given `status`), skipping others."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while (remaining := deadline - time.monotonic()) > 0:
            msg = self.receive(remaining)
            if msg is None:
                break
            if msg.method == method and (msg.is_request == (status is None)):
                if status is None or msg.status == status:
                    return msg
            seen.append(msg.start_line)
        what = f"{status} response to {method}" if status else method
        raise AssertionError(f"no {what} within {timeout} s; got {seen}")

    def reply(
        self,
        request: SipMessage,
        status: int = 200,
        reason: str = "OK",
        headers: list[tuple[str, str]] | None = None,
        to_tag: str | None = None,
    ) -> bytes:
        """Answer with the dialog headers echoed; a To tag is added when missing."""
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {v}" for v in request.header_all("Via")]
        lines.append(f"From: {request.header('From')}")
        to = request.header("To") or ""
        if tag_of(to) is None and status > 100:
            to += f";tag={to_tag or secrets.token_hex(4)}"
        lines.append(f"To: {to}")
        lines.append(f"Call-ID: {request.header('Call-ID')}")
        lines.append(f"CSeq: {request.header('CSeq')}")
        lines += [f"{n}: {v}" for n, v in headers or []]
        lines += ["Server: lpclient-test-peer", "Content-Length: 0", "", ""]
        data = "\r\n".join(lines).encode()
        self.sock.sendto(data, request.source)
        self._answered[request.transaction_key()] = data
        return data

    def accept_register(self, request: SipMessage, expires: int = 3600) -> bytes:
        contact = request.header("Contact") or ""
        contact = re.sub(r";\s*expires=\d+", "", contact)
        return self.reply(
            request,
            headers=[("Contact", f"{contact};expires={expires}"), ("Expires", str(expires))],
        )

    def notify(
        self,
        subscribe: SipMessage,
        to_tag: str,
        template: bytes,
        *,
        event: str | None = None,
        subscription_state: str | None = None,
    ) -> bytes:
        """A NOTIFY in the SUBSCRIBE's dialog, built from a captured NOTIFY.

        The dialog headers (request URI, Via, From, To, Call-ID, CSeq, Contact) are replaced;
        every other header and the body bytes are kept as in `template`.
        """
        head, _, body = template.partition(b"\r\n\r\n")
        kept = [line for line in head.decode().split("\r\n")[1:] if line]
        replaced = {"via", "from", "to", "call-id", "cseq", "contact", "max-forwards"}
        self._cseq += 1
        target = uri_of(subscribe.header("Contact") or "")
        lines = [
            f"NOTIFY {target} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{secrets.token_hex(6)};rport",
            "Max-Forwards: 70",
            f"From: <{uri_of(subscribe.header('To') or '')}>;tag={to_tag}",
            f"To: {subscribe.header('From')}",
            f"Call-ID: {subscribe.header('Call-ID')}",
            f"CSeq: {self._cseq} NOTIFY",
            f"Contact: <sip:rls@{self.host}:{self.port};transport=udp>",
        ]
        for line in kept:
            name = line.split(":", 1)[0].strip().lower()
            if name in replaced:
                continue
            if name == "event" and event is not None:
                line = f"Event: {event}"
            if name == "subscription-state" and subscription_state is not None:
                line = f"Subscription-State: {subscription_state}"
            lines.append(line)
        data = "\r\n".join(lines).encode() + b"\r\n\r\n" + body
        host, port = self._target_address(subscribe, target)
        self.sock.sendto(data, (host, port))
        return data

    @staticmethod
    def _target_address(subscribe: SipMessage, target: str) -> tuple[str, int]:
        match = re.match(r"sips?:(?:[^@]*@)?([^:;>]+)(?::(\d+))?", target)
        if match:
            return match.group(1), int(match.group(2) or 5060)
        return subscribe.source
