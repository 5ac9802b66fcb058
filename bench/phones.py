"""A farm of UDP phones in a process of its own, for the fan-out benchmark (`bench.fanout`).

`python -m bench.phones` reads one JSON command per line on stdin and answers one JSON line on
stdout. Each phone holds one list subscription, as Linphone 5.1 sends it (User-Agent, the list
in the body, deflated), on one of the edges; all phones of an edge share one UDP socket, told
apart by Call-ID. Every NOTIFY is answered 200 at once; for each phone the farm notes when each
watched URI was first named a user (given an `<instance>`) by a partial NOTIFY, on the system's
monotonic clock (the benchmark's process reads the same clock).

Commands:
- `{"subscribe": [{"edge": [host, port], "entries": [uri, ...]}, ...], "window": W}`: every
  phone subscribes (at most W SUBSCRIBEs unanswered at once; a 503 is tried again after its
  Retry-After); answers `{"subscribed": n, "seconds": s, "retries": r}` once each phone has its
  full-state NOTIFY.
- `{"named": [uri, ...], "timeout": s}`: waits until every phone watching one of these URIs
  has had it named in a partial NOTIFY (or the timeout), and answers `{"times": {uri: [t, ...]},
  "missing": n, "notifies": n}`: the monotonic times, one per phone that watches the URI.
- `{"stop": true}`.

The farm is its own process so that its parsing does not compete with the functions for the
benchmark process's interpreter lock.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import socket
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

DOMAIN = "example.org"
RLS = f"sip:rls@{DOMAIN}"
USER_RE = re.compile(rb'<resource uri="([^"]+)"><instance ')
RETRY_AFTER_RE = re.compile(rb"\r\nRetry-After: *(\d+)", re.IGNORECASE)
SUBSCRIBE_TIMEOUT_S = 8.0
MAX_TRIES = 10


@dataclass
class Phone:
    index: int
    edge: tuple[str, int]
    entries: list[str]
    call_id: str = field(default_factory=lambda: secrets.token_hex(10))
    tag: str = field(default_factory=lambda: secrets.token_hex(4))
    status: int = 0
    tries: int = 0
    full_state: bool = False
    named: dict[str, float] = field(default_factory=dict)  # URI -> first partial naming it


def list_body(entries: list[str]) -> bytes:
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns='
        '"urn:ietf:params:xml:ns:resource-lists"><list>\n'
        + "".join(f'<entry uri="{e}"/>\n' for e in entries)
        + "</list></resource-lists>\n"
    )
    return zlib.compress(text.encode())


def subscribe_request(phone: Phone, port: int) -> bytes:
    body = list_body(phone.entries)
    user = f"fan{phone.index}"
    head = "\r\n".join(
        [
            f"SUBSCRIBE {RLS} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{secrets.token_hex(6)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{user}@{DOMAIN}>;tag={phone.tag}",
            f"To: <{RLS}>",
            f"Call-ID: {phone.call_id}",
            "CSeq: 1 SUBSCRIBE",
            f'Contact: <sip:{user}@127.0.0.1:{port}>;+sip.instance="<urn:uuid:{phone.call_id}>"',
            "User-Agent: LinphoneSDK/5.1 (bench fan-out)",
            "Event: presence",
            "Expires: 3600",
            "Supported: eventlist",
            "Require: recipient-list-subscribe",
            "Content-Disposition: recipient-list",
            "Accept: multipart/related, application/rlmi+xml, application/pidf+xml",
            "Accept-Encoding: deflate",
            "Content-Type: application/resource-lists+xml",
            "Content-Encoding: deflate",
            f"Content-Length: {len(body)}",
            "",
            "",
        ]
    )
    return head.encode() + body


def header(head: bytes, name: bytes) -> bytes:
    """The first value of a header (the farm reads only what the edge itself writes)."""
    start = head.find(b"\r\n" + name + b":")
    if start < 0:
        return b""
    start += len(name) + 3
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else None].strip()


class Farm(asyncio.DatagramProtocol):
    """One edge's phones on one socket."""

    def __init__(self, phones: dict[str, Phone], on_change: asyncio.Event) -> None:
        self.phones = phones
        self.on_change = on_change
        self.transport: asyncio.DatagramTransport | None = None
        self.notifies = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        at = time.monotonic()
        head, _, body = data.partition(b"\r\n\r\n")
        phone = self.phones.get(header(head, b"Call-ID").decode())
        if data.startswith(b"SIP/2.0 "):
            if phone is not None and b"SUBSCRIBE" in header(head, b"CSeq"):
                phone.status = int(data[8:11])
                if phone.status == 503:
                    found = RETRY_AFTER_RE.search(head)
                    phone.status = -int(found.group(1)) if found else -1
                self.on_change.set()
            return
        if not data.startswith(b"NOTIFY ") or self.transport is None:
            return
        self.notifies += 1
        answer = b"SIP/2.0 200 OK\r\n" + b"".join(
            name + b": " + header(head, name) + b"\r\n"
            for name in (b"Via", b"From", b"To", b"Call-ID", b"CSeq")
        )
        self.transport.sendto(answer + b"Content-Length: 0\r\n\r\n", addr)
        if phone is None:
            return
        if b"deflate" in header(head, b"Content-Encoding"):
            body = zlib.decompress(body)
        if b'fullState="true"' in body:
            phone.full_state = True
        else:
            for uri in USER_RE.findall(body):
                phone.named.setdefault(uri.decode(), at)
        self.on_change.set()


class Farms:
    def __init__(self) -> None:
        self.farms: dict[tuple[str, int], tuple[Farm, int]] = {}
        self.phones: list[Phone] = []
        self.changed = asyncio.Event()

    async def farm(self, edge: tuple[str, int]) -> tuple[Farm, int]:
        if edge not in self.farms:
            loop = asyncio.get_running_loop()
            by_call: dict[str, Phone] = {}
            transport, farm = await loop.create_datagram_endpoint(
                lambda: Farm(by_call, self.changed), local_addr=("127.0.0.1", 0)
            )
            farm.transport = transport  # connection_made may come a loop turn later
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            self.farms[edge] = (farm, sock.getsockname()[1])
        return self.farms[edge]

    async def subscribe(self, specs: list[dict[str, Any]], window: int) -> dict[str, Any]:
        started = time.monotonic()
        retries = 0
        todo: list[Phone] = []
        for spec in specs:
            edge = (str(spec["edge"][0]), int(spec["edge"][1]))
            phone = Phone(len(self.phones), edge, spec["entries"])
            farm, _ = await self.farm(phone.edge)
            farm.phones[phone.call_id] = phone
            self.phones.append(phone)
            todo.append(phone)
        pending: dict[str, tuple[Phone, float]] = {}
        waiting: list[tuple[float, Phone]] = []  # (not before, phone): refused with Retry-After
        while todo or pending or waiting:
            now = time.monotonic()
            for at, phone in [w for w in waiting if w[0] <= now]:
                waiting.remove((at, phone))
                todo.append(phone)
            while todo and len(pending) < window:
                phone = todo.pop(0)
                farm, port = await self.farm(phone.edge)
                if phone.status:  # tried before: a new call, so nothing of the old one matches
                    del farm.phones[phone.call_id]
                    phone.call_id, phone.tag = secrets.token_hex(10), secrets.token_hex(4)
                    farm.phones[phone.call_id] = phone
                    phone.status = 0
                assert farm.transport is not None
                phone.tries += 1
                farm.transport.sendto(subscribe_request(phone, port), phone.edge)
                pending[phone.call_id] = (phone, now)
            for call_id, (phone, sent) in list(pending.items()):
                if phone.status == 200 or phone.status >= 300 or phone.status < 0:
                    del pending[call_id]
                    if phone.status != 200 and phone.tries < MAX_TRIES:
                        retries += 1
                        waiting.append((now + max(1, -phone.status), phone))
                elif now - sent > SUBSCRIBE_TIMEOUT_S:
                    del pending[call_id]
                    phone.status = -1
                    if phone.tries < MAX_TRIES:
                        retries += 1
                        todo.append(phone)
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), 0.05)
            except TimeoutError:
                pass
        deadline = time.monotonic() + 60
        while not all(p.full_state for p in self.phones) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return {
            "subscribed": sum(p.status == 200 for p in self.phones),
            "full_state": sum(p.full_state for p in self.phones),
            "seconds": time.monotonic() - started,
            "retries": retries,
        }

    async def named(self, uris: list[str], timeout: float) -> dict[str, Any]:
        wanted = set(uris)
        watching = [(p, wanted & set(p.entries)) for p in self.phones]
        deadline = time.monotonic() + timeout

        def missing() -> int:
            return sum(len(w - p.named.keys()) for p, w in watching)

        while missing() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        times: dict[str, list[float]] = {u: [] for u in uris}
        for phone, watched in watching:
            for uri in watched:
                if uri in phone.named:
                    times[uri].append(phone.named[uri])
        return {
            "times": times,
            "missing": missing(),
            "notifies": sum(f.notifies for f, _ in self.farms.values()),
        }


async def main() -> None:
    farms = Farms()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 30)  # a command lists every phone
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        if command.get("stop"):
            break
        if "subscribe" in command:
            answer = await farms.subscribe(command["subscribe"], int(command.get("window", 20)))
        elif "named" in command:
            answer = await farms.named(command["named"], float(command.get("timeout", 60)))
        else:
            answer = {"error": f"unknown command {sorted(command)}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
