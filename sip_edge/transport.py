"""asyncio transports around the sans-I/O SIP core: UDP and TCP on one port, TLS beside them.

Each datagram or stream chunk goes through the parser; complete messages go to the handler with
the `Peer` they came from. Unparseable requests are answered (400 and a reason) when the parser
recovered enough headers; a broken stream is then closed, since its framing is lost. Stream
connections are capped in all and per source address, and closed when idle, when a message
stays half-sent too long, or when no complete message came soon after connecting.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import time
from typing import Protocol

from sip_edge.dialog import Peer
from sip_edge.flood import FloodGuard
from sip_edge.sip.message import Request, Response, error_response
from sip_edge.sip.parser import KeepAlive, ParseError, ParserLimits, StreamParser, parse_datagram


class MessageHandler(Protocol):
    def on_message(self, message: Request | Response, peer: Peer) -> None: ...

    def on_connection_lost(self, peer: Peer) -> None: ...


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: Transports) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        peer = Peer("udp", addr[0], addr[1])
        self.owner.stats["udp_in"] += 1
        flood = self.owner.flood  # responses (to our NOTIFYs) pass; requests are counted
        if flood and not data.startswith(b"SIP/2.0 "):
            if not flood.admit(addr[0], time.monotonic()):
                return
        try:
            message = parse_datagram(data, self.owner.limits)
        except ParseError as err:
            self.owner.reject(err, peer)
            return
        if isinstance(message, KeepAlive):
            return
        if isinstance(message, Request):
            message.wire_size = len(data)
        self.owner.deliver(message, peer)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the NOTIFY client transaction times out instead.
        self.owner.stats["udp_errors"] += 1


class _Stream(asyncio.Protocol):
    def __init__(self, owner: Transports, kind: str) -> None:
        self.owner = owner
        self.kind = kind
        self.parser = StreamParser(owner.limits)
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.last_activity = time.monotonic()
        self.opened = self.last_activity
        self.spoke = False  # has sent a complete SIP message: until then keep-alives don't count
        self.partial_since: float | None = None
        self.unanswered = 0  # requests delivered whose final response is not written yet
        self.draining = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("peername")[:2]
        owner = self.owner
        banned = owner.flood and owner.flood.banned(host, time.monotonic())
        crowded = owner.per_source.get(host, 0) >= owner.max_per_source
        if banned or crowded or len(owner.connections) >= owner.max_connections:
            owner.stats["refused_connections"] += 1
            if crowded:
                owner.stats["refused_per_source"] += 1
            transport.close()
            return
        conn_id = next(owner.ids)
        self.peer = Peer(self.kind, host, port, conn_id)
        owner.connections[conn_id] = self
        owner.per_source[host] = owner.per_source.get(host, 0) + 1

    def data_received(self, data: bytes) -> None:
        if self.peer is None or self.transport is None:
            return
        if self.spoke:
            self.last_activity = time.monotonic()
        try:
            events = self.parser.feed(data)
        except ParseError as err:
            for event in getattr(err, "preceding", []):
                self._dispatch(event)
            self.unanswered += 1  # its 400, written now, is a final response too
            if not self.owner.reject(err, self.peer):
                self.unanswered -= 1
            self._drain_then_close()
            return
        for event in events:
            self._dispatch(event)
        self.partial_since = (
            (self.partial_since or time.monotonic()) if self.parser.buffered else None
        )

    def _dispatch(self, event: Request | Response | KeepAlive) -> None:
        assert self.peer is not None and self.transport is not None
        if self.transport.is_closing():
            return  # closed for flooding: the rest of what it sent is dropped
        flood, now = self.owner.flood, time.monotonic()
        if flood and isinstance(event, Request) and not flood.admit(self.peer.host, now):
            self.transport.close()  # a flooding stream is closed, and refused while banned
            return
        if isinstance(event, KeepAlive):
            if event.reply:
                self.transport.write(event.reply)
            return
        if isinstance(event, Request) and event.method != "ACK":
            self.unanswered += 1
        if not self.spoke:
            self.spoke = True
            self.last_activity = now
        self.owner.deliver(event, self.peer)

    def _drain_then_close(self) -> None:
        """RFC 3261 §18.3: the stream cannot be framed any more, so it must close; first the
        complete requests that came before the error get their answers (within a bound)."""
        assert self.transport is not None
        self.draining = True
        if self.unanswered <= 0:
            self.transport.close()
            return
        self.transport.pause_reading()
        asyncio.get_running_loop().call_later(self.owner.drain_timeout, self.transport.close)

    def wrote(self, data: bytes) -> None:
        if data.startswith(b"SIP/2.0 ") and data[8:9] in b"23456":
            self.unanswered -= 1
            if self.draining and self.unanswered <= 0 and self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if (
            self.peer is not None
            and self.owner.connections.pop(self.peer.connection or 0, None) is not None
        ):
            host, per_source = self.peer.host, self.owner.per_source
            per_source[host] -= 1
            if per_source[host] <= 0:
                del per_source[host]
            self.owner.handler.on_connection_lost(self.peer)


class Transports:
    """The edge's sockets: `start()` binds them, `send()` writes to a peer's flow."""

    def __init__(
        self,
        handler: MessageHandler,
        *,
        limits: ParserLimits,
        max_connections: int,
        idle_timeout: float,
        partial_timeout: float,
        flood: FloodGuard | None = None,
        drain_timeout: float = 5.0,
        max_per_source: int = 1000,
        first_message_timeout: float = 10.0,
    ) -> None:
        self.handler = handler
        self.flood = flood
        self.drain_timeout = drain_timeout
        self.limits = limits
        self.max_connections = max_connections
        self.max_per_source = max_per_source
        self.per_source: dict[str, int] = {}  # open connections per address
        self.first_message_timeout = first_message_timeout
        self.idle_timeout = idle_timeout
        self.partial_timeout = partial_timeout
        self.connections: dict[int, _Stream] = {}
        self.ids = itertools.count(1)
        self.stats: dict[str, int] = {
            "udp_in": 0,
            "udp_errors": 0,
            "rejected": 0,
            "refused_connections": 0,
            "refused_per_source": 0,
            "closed_idle": 0,
            "closed_silent": 0,
        }
        self._udp: _Udp | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.Task[None] | None = None
        self.ports: dict[str, int] = {}

    async def start(
        self, host: str, port: int, tls_port: int | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        for attempt in range(20):
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=(host, port)
            )
            self._udp = protocol
            self.ports["udp"] = transport.get_extra_info("sockname")[1]
            # TCP on the same port as UDP (RFC 3261 §18): port 0 means "the one UDP got".
            try:
                tcp = await loop.create_server(
                    lambda: _Stream(self, "tcp"), host, self.ports["udp"], reuse_address=True
                )
                break
            except OSError:
                # The free UDP port the kernel chose may be taken for TCP: pick another.
                transport.close()
                if port != 0 or attempt == 19:
                    raise
        self._servers.append(tcp)
        self.ports["tcp"] = tcp.sockets[0].getsockname()[1]
        if tls is not None and tls_port is not None:
            server = await loop.create_server(
                lambda: _Stream(self, "tls"), host, tls_port, ssl=tls, reuse_address=True
            )
            self._servers.append(server)
            self.ports["tls"] = server.sockets[0].getsockname()[1]
        self._sweeper = asyncio.create_task(self._sweep())

    def deliver(self, message: Request | Response, peer: Peer) -> None:
        try:
            self.handler.on_message(message, peer)
        except Exception:  # one bad message must never take the edge down
            from chalicelib.observability import logger

            logger.exception("handler failed on a message from %s", peer.host)

    def reject(self, err: ParseError, peer: Peer) -> bool:
        """Answer what could not be parsed, when it can be answered; whether it was."""
        self.stats["rejected"] += 1
        answer = error_response(err)
        return answer is not None and self.send(peer, answer.to_bytes())

    def send(self, peer: Peer, data: bytes) -> bool:
        """Write to the peer's flow; False when a stream connection is gone."""
        if peer.transport == "udp":
            if self._udp is None or self._udp.transport is None:
                return False
            self._udp.transport.sendto(data, (peer.host, peer.port))
            return True
        conn = self.connections.get(peer.connection or 0)
        if conn is None or conn.transport is None or conn.transport.is_closing():
            return False
        conn.last_activity = time.monotonic()
        conn.transport.write(data)
        conn.wrote(data)
        return True

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(
                min(
                    1.0,
                    self.partial_timeout / 2,
                    self.idle_timeout / 2,
                    self.first_message_timeout / 2,
                )
            )
            now = time.monotonic()
            for conn in list(self.connections.values()):
                if conn.transport is None or conn.transport.is_closing():
                    continue
                if not conn.spoke and now - conn.opened > self.first_message_timeout:
                    # Connected, and said nothing a SIP server serves: the slot goes back.
                    self.stats["closed_silent"] += 1
                    conn.transport.close()
                    continue
                idle = now - conn.last_activity > self.idle_timeout
                stuck = conn.partial_since is not None and (
                    now - conn.partial_since > self.partial_timeout
                )
                if idle or stuck:
                    self.stats["closed_idle"] += 1
                    conn.transport.close()

    async def close(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        for server in self._servers:
            server.close()
        for conn in list(self.connections.values()):
            if conn.transport:
                conn.transport.close()
        if self._udp and self._udp.transport:
            self._udp.transport.close()
