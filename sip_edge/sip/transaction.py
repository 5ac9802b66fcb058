"""SIP transactions (RFC 3261 17) as clock-injected state machines: events in, actions out.

No timers, sockets or tasks here: every call takes `now` (seconds, any monotonic origin) and
returns a list of actions; the caller sends what `Send` says, hands `Deliver`/`ResponseReceived`
to its application, and calls `on_timer(now)` at `next_deadline()`.

Implemented: non-INVITE server (17.2.2), INVITE server (17.2.1, so a 405/501 to an INVITE is
retransmitted until its ACK), non-INVITE client (17.1.2, for NOTIFY). No INVITE client.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from sip_edge.sip.grammar import random_urlsafe
from sip_edge.sip.message import Request, Response

MAGIC_COOKIE = "z9hG4bK"


@dataclass(frozen=True)
class Timers:
    """RFC 3261 17.1.1.1 defaults: T1 (RTT estimate), T2 (max retransmit interval), T4."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


def new_branch() -> str:
    """A Via branch for a request we originate (RFC 3261 8.1.1.7 magic cookie prefix)."""
    return MAGIC_COOKIE + random_urlsafe(12)


class State(Enum):
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


# --- actions -----------------------------------------------------------------------------------


@dataclass(eq=False)
class Send:
    """Send `data` (the serialized `message`) to `dest`, the opaque peer the caller gave."""

    message: Request | Response
    dest: Any
    data: bytes = b""

    def __post_init__(self) -> None:
        if not self.data:
            self.data = self.message.to_bytes()


@dataclass(eq=False)
class Deliver:
    """A new request for the application; answer it with `TransactionLayer.respond`.

    `transaction` is None for an ACK that matched no transaction (the ACK to a 2xx, RFC 3261
    17.2.3): such an ACK never gets a response.
    """

    request: Request
    transaction: ServerTransaction | None
    dest: Any


@dataclass(eq=False)
class ResponseReceived:
    """A response to a request we sent (provisional or the first final one)."""

    response: Response
    transaction: ClientTransaction


@dataclass(eq=False)
class TimedOut:
    """Timer F (client: no final response) or Timer H (INVITE server: no ACK) fired.

    For a client transaction the application treats it as a 408 (RFC 3261 8.1.3.1).
    """

    transaction: Transaction


@dataclass(eq=False)
class TransportError:
    """The caller reported that sending failed; the transaction is over (RFC 3261 17.1.4)."""

    transaction: Transaction


@dataclass(eq=False)
class Terminated:
    """The transaction is gone; the layer has forgotten it."""

    transaction: Transaction


Action = Send | Deliver | ResponseReceived | TimedOut | TransportError | Terminated


# --- transactions ------------------------------------------------------------------------------


@dataclass(eq=False)
class Transaction:
    request: Request
    dest: Any
    reliable: bool
    timers: Timers
    key: tuple[Any, ...] = ()
    state: State = State.TRYING
    _deadlines: dict[str, float] = field(default_factory=dict)

    @property
    def next_deadline(self) -> float | None:
        return min(self._deadlines.values()) if self._deadlines else None

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def _terminate(self) -> list[Action]:
        self.state = State.TERMINATED
        self._deadlines.clear()
        return [Terminated(self)]

    def on_timer(self, now: float) -> list[Action]:
        """Fire every timer due at `now`, earliest first."""
        out: list[Action] = []
        while self._deadlines and not self.terminated:
            name, when = min(self._deadlines.items(), key=lambda kv: kv[1])
            if when > now:
                break
            del self._deadlines[name]
            out += self._fire(name, now)
        return out

    def _fire(self, name: str, now: float) -> list[Action]:
        raise NotImplementedError

    def transport_error(self) -> list[Action]:
        if self.terminated:
            return []
        return [TransportError(self), *self._terminate()]


@dataclass(eq=False)
class ServerTransaction(Transaction):
    """Non-INVITE server transaction (RFC 3261 17.2.2)."""

    last_response: Send | None = None

    def receive(self, request: Request, now: float) -> list[Action]:
        """A retransmission of the request: resend the last response, never deliver again."""
        if self.state in (State.PROCEEDING, State.COMPLETED) and self.last_response:
            return [self.last_response]
        return []  # Trying: the application has not answered yet; absorb

    def respond(self, response: Response, now: float, data: bytes = b"") -> list[Action]:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return []  # RFC 3261 17.2.2: responses after the final one are not sent
        self.last_response = Send(response, self.dest, data)
        out: list[Action] = [self.last_response]
        if response.status < 200:
            self.state = State.PROCEEDING
            return out
        self.state = State.COMPLETED
        if self.reliable:
            return out + self._terminate()  # Timer J = 0 on reliable transports
        self._deadlines["J"] = now + 64 * self.timers.t1
        self.request.headers.shed()  # from here on only matched, and answered from bytes
        response.headers.shed()
        return out

    def _fire(self, name: str, now: float) -> list[Action]:
        return self._terminate() if name == "J" else []


@dataclass(eq=False)
class InviteServerTransaction(ServerTransaction):
    """INVITE server transaction (RFC 3261 17.2.1); the edge only answers INVITEs negatively."""

    state: State = State.PROCEEDING
    _g_interval: float = 0.0

    def receive(self, request: Request, now: float) -> list[Action]:
        if request.method == "ACK":
            if self.state is State.COMPLETED:
                self.state = State.CONFIRMED
                self._deadlines.pop("G", None)
                self._deadlines.pop("H", None)
                if self.reliable:
                    return self._terminate()
                self._deadlines["I"] = now + self.timers.t4
            return []
        if self.state in (State.PROCEEDING, State.COMPLETED) and self.last_response:
            return [self.last_response]
        return []

    def respond(self, response: Response, now: float, data: bytes = b"") -> list[Action]:
        if self.state is not State.PROCEEDING:
            return []
        self.last_response = Send(response, self.dest, data)
        out: list[Action] = [self.last_response]
        if response.status < 200:
            return out
        if response.status < 300:
            return out + self._terminate()  # 2xx retransmission belongs to the UA core
        self.state = State.COMPLETED
        if not self.reliable:
            self._g_interval = self.timers.t1
            self._deadlines["G"] = now + self._g_interval
        self._deadlines["H"] = now + 64 * self.timers.t1
        return out

    def _fire(self, name: str, now: float) -> list[Action]:
        if name == "G" and self.state is State.COMPLETED and self.last_response:
            self._g_interval = min(2 * self._g_interval, self.timers.t2)
            self._deadlines["G"] = now + self._g_interval
            return [self.last_response]
        if name == "H":
            return [TimedOut(self), *self._terminate()]
        if name == "I":
            return self._terminate()
        return []


@dataclass(eq=False)
class ClientTransaction(Transaction):
    """Non-INVITE client transaction (RFC 3261 17.1.2), e.g. for NOTIFY."""

    final_response: Response | None = None
    _e_interval: float = 0.0
    _send: Send | None = None

    def start(self, now: float) -> list[Action]:
        self._send = Send(self.request, self.dest)
        self._deadlines["F"] = now + 64 * self.timers.t1
        if not self.reliable:
            self._e_interval = self.timers.t1
            self._deadlines["E"] = now + self._e_interval
        return [self._send]

    def receive(self, response: Response, now: float) -> list[Action]:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return []  # Completed: retransmitted finals are absorbed
        if response.status < 200:
            self.state = State.PROCEEDING
            return [ResponseReceived(response, self)]
        self.state = State.COMPLETED
        self.final_response = response
        self._deadlines.pop("E", None)
        self._deadlines.pop("F", None)
        out: list[Action] = [ResponseReceived(response, self)]
        if self.reliable:
            return out + self._terminate()  # Timer K = 0 on reliable transports
        self._deadlines["K"] = now + self.timers.t4
        self.request.headers.shed()  # from here on it only absorbs retransmitted finals
        return out

    def _fire(self, name: str, now: float) -> list[Action]:
        if name == "E" and self._send is not None:
            if self.state is State.TRYING:
                self._e_interval = min(2 * self._e_interval, self.timers.t2)
            else:
                self._e_interval = self.timers.t2
            self._deadlines["E"] = now + self._e_interval
            return [self._send]
        if name == "F":
            return [TimedOut(self), *self._terminate()]
        if name == "K":
            return self._terminate()
        return []


# --- matching ----------------------------------------------------------------------------------


def server_key(request: Request) -> tuple[Any, ...]:
    """RFC 3261 17.2.3: branch + sent-by + method (ACK matches INVITE).

    Requests without a magic-cookie branch fall back to the RFC 2543 identity: Request-URI,
    From tag, Call-ID, CSeq number, top Via (To tag left out so the ACK matches its INVITE).
    """
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    if via is None:
        raise ValueError("request without Via")
    branch = via.branch
    if branch and branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
        return ("3261", branch, via.sent_by.lower(), method)
    return (
        "2543",
        request.uri,
        request.from_.tag,
        request.call_id,
        request.cseq.seq,
        method,
        via.sent_by.lower(),
        branch,
    )


def client_key(message: Request | Response) -> tuple[str, str] | None:
    """RFC 3261 17.1.3: top Via branch + CSeq method."""
    via = message.top_via
    if via is None or not via.branch:
        return None
    return (via.branch, message.cseq.method)


class TransactionLayer:
    """All transactions of one edge: matching, timers, and cleanup.

    `dest` is whatever the caller uses to address a peer (an address tuple, a connection);
    it comes back in `Send` and `Deliver` untouched.
    """

    def __init__(self, timers: Timers | None = None) -> None:
        self.timers = timers or Timers()
        self.server: dict[tuple[Any, ...], ServerTransaction] = {}
        self.client: dict[tuple[str, str], ClientTransaction] = {}
        self._heap: list[tuple[float, int, Transaction]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self.server) + len(self.client)

    def receive_request(
        self, request: Request, now: float, *, reliable: bool, dest: Any
    ) -> list[Action]:
        """A request from the network: a new transaction (Deliver) or a retransmission.

        The key adds where the request came from to RFC 3261's branch, sent-by and method: a
        retransmission comes from where the original did, and another client reusing a branch
        (the RFC 4475 messages all do) must not be answered with someone else's response.
        """
        key = (*server_key(request), dest)
        tx = self.server.get(key)
        if tx is not None:
            return self._after(tx, tx.receive(request, now))
        if request.method == "ACK":
            return [Deliver(request, None, dest)]  # no transaction: ACK to a 2xx
        cls = InviteServerTransaction if request.method == "INVITE" else ServerTransaction
        tx = cls(request, dest, reliable, self.timers, key)
        self.server[key] = tx
        return [Deliver(request, tx, dest)]

    def respond(
        self, tx: ServerTransaction, response: Response, now: float, data: bytes = b""
    ) -> list[Action]:
        """The application's response to a delivered request; `data`, when given, is its
        wire form (the caller may have serialized it already, to weigh it)."""
        return self._after(tx, tx.respond(response, now, data))

    def send_request(
        self, request: Request, now: float, *, reliable: bool, dest: Any
    ) -> tuple[ClientTransaction, list[Action]]:
        """Start a non-INVITE client transaction; the top Via must carry a fresh branch."""
        if request.method in ("INVITE", "ACK"):
            raise ValueError("only non-INVITE client transactions are implemented")
        key = client_key(request)
        if key is None or not key[0].startswith(MAGIC_COOKIE):
            raise ValueError("the request needs a top Via with a z9hG4bK branch")
        if key in self.client:
            raise ValueError(f"branch {key[0]} already in use")
        tx = ClientTransaction(request, dest, reliable, self.timers, key)
        self.client[key] = tx
        return tx, self._after(tx, tx.start(now))

    def receive_response(self, response: Response, now: float) -> list[Action]:
        """A response from the network; unmatched ones are dropped (RFC 3261 18.1.2)."""
        key = client_key(response)
        tx = self.client.get(key) if key else None
        if tx is None:
            return []
        return self._after(tx, tx.receive(response, now))

    def transport_error(self, tx: Transaction, now: float) -> list[Action]:
        return self._after(tx, tx.transport_error())

    def on_timer(self, now: float) -> list[Action]:
        """Fire every timer due at `now`."""
        out: list[Action] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, tx = heapq.heappop(heap)
            if tx.terminated or tx.next_deadline != when:
                continue  # superseded entry
            out += self._after(tx, tx.on_timer(now))
        return out

    def next_deadline(self) -> float | None:
        """When `on_timer` must next be called, or None if no timer runs."""
        heap = self._heap
        while heap and (heap[0][2].terminated or heap[0][2].next_deadline != heap[0][0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _after(self, tx: Transaction, actions: list[Action]) -> list[Action]:
        if tx.terminated:
            if isinstance(tx, ServerTransaction):
                if self.server.get(tx.key) is tx:
                    del self.server[tx.key]
            elif self.client.get(tx.key) is tx:
                del self.client[tx.key]
        else:
            deadline = tx.next_deadline
            if deadline is not None:
                heapq.heappush(self._heap, (deadline, next(self._seq), tx))
        return actions
