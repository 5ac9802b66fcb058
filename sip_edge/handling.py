"""What the edge lends the parts that handle its requests: `EdgeServices`, the interface they call
back through (so none of them imports `Edge`), and `Reject`, how they stop a request with an answer.
A handler answers one way: it returns its response (a SUBSCRIBE's with the work that follows it,
`sip_edge.presence.actions.Reply`) or raises Reject; the edge alone sends it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, Protocol

from chalicelib import edge_contract as contract
from chalicelib import errors, settings
from sip_edge.dialog import Peer
from sip_edge.metrics import EdgeMetrics
from sip_edge.sip.message import Request
from sip_edge.sip.status import REASON_PHRASES
from sip_edge.sip.values import Via

# What an unverified UDP source gets back, retransmissions included, stays within this multiple
# of what it sent: with a spoofed source, anything more makes the edge a reflector (RFC 3261
# §18, RFC 8760 §4). Streams are exempt: their handshake proved the source.
AMPLIFICATION_LIMIT = 3


def within_amplification_limit(request: Request, peer: Peer, size: int) -> bool:
    """Whether `size` octets may answer `request`: over UDP within AMPLIFICATION_LIMIT times
    the datagram it came in (a request built here, of size 0, has no limit to keep)."""
    limit = AMPLIFICATION_LIMIT * request.wire_size
    return peer.reliable or not request.wire_size or size <= limit


class Reject(Exception):
    """Answer the current request with `status` (and headers) and stop handling it."""

    def __init__(
        self, status: int, reason: str | None = None, headers: Iterable[tuple[str, str]] = ()
    ):
        super().__init__(reason or REASON_PHRASES.get(status, ""))
        self.status = status
        self.reason = reason
        self.headers = list(headers)


def raise_function_error(answer: Mapping[str, object]) -> None:
    """Reject with the SIP status of the refusal a function answered, if it answered one."""
    error = contract.refusal(answer)
    if error is None:
        return
    kind = errors.CATALOGUE.get(error.get("code", ""), errors.CATALOGUE["internal"])
    headers = [
        (name, value)
        for name, values in (error.get("headers") or {}).items()
        for value in ([values] if isinstance(values, str) else values)
    ]
    raise Reject(kind.sip_status, error.get("message") or kind.reason, headers)


class EdgeServices(Protocol):
    """The edge as its request handlers see it; read on every use, since tests swap
    `clock` and `functions` on a running edge and `edge_id` is only known after `attach`."""

    cfg: settings.Settings
    functions: contract.Caller  # sip_edge.functions
    clock: Callable[[], float]
    pacing: Callable[[], float]
    edge_id: str
    stats: dict[str, int]
    ports: dict[str, int]

    @property
    def host(self) -> str: ...

    metrics: EdgeMetrics

    def contact(self, transport: str) -> str: ...

    def via(self, transport: str) -> Via: ...

    async def request(self, request: Request, peer: Peer) -> int: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None: ...
