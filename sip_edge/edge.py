"""The edge's request handling: transport attach, transactions, timers and method dispatch.

It sits between the transports and the functions. Parsing, transactions and subscription
dialogs are the sans-I/O pieces in `sip_edge.sip` and `sip_edge.presence`; the edge answers
OPTIONS itself and hands REGISTER, SUBSCRIBE and PUBLISH, once the digest guard has
authenticated them, to their handlers, which ask the functions for every lookup and every piece
of state. Every handler returns its response (or raises Reject); work that follows a response
(a SUBSCRIBE's NOTIFYs) starts once it is sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from chalicelib import settings
from chalicelib.observability import logger
from chalicelib.resilience import retry_after
from sip_edge.dialog import Peer
from sip_edge.digest_guard import DigestGuard
from sip_edge.fail_fast import DEADLINE
from sip_edge.functions import FunctionError, Functions
from sip_edge.handling import Reject, within_amplification_limit
from sip_edge.metrics import EdgeMetrics
from sip_edge.presence.actions import Reply
from sip_edge.presence.subscribe import LIST_TYPE
from sip_edge.publish_handler import PublishHandler
from sip_edge.queue import EdgeQueue
from sip_edge.register_handler import RegisterHandler
from sip_edge.sip.headers import split_commas
from sip_edge.sip.message import Request, Response, make_response
from sip_edge.sip.status import ParseError
from sip_edge.sip.transaction import (
    Action,
    ClientTransaction,
    Deliver,
    ResponseReceived,
    Send,
    ServerTransaction,
    State,
    TimedOut,
    TransactionLayer,
    TransportError,
    new_branch,
)
from sip_edge.sip.values import Via
from sip_edge.subscription_service import SubscriptionService

ALLOW = "SUBSCRIBE, NOTIFY, PUBLISH, REGISTER, OPTIONS"
SUPPORTED_EXTENSIONS = frozenset({"eventlist", "recipient-list-subscribe"})
KNOWN_METHODS = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY",
     "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"}
)  # fmt: skip
AUTHENTICATED_METHODS = frozenset({"SUBSCRIBE", "REGISTER", "PUBLISH"})
# Methods with a transaction of their own; anything else is answered once, statelessly.
SERVED_METHODS = AUTHENTICATED_METHODS | {"OPTIONS"}
DIALOG_SWEEP_SECONDS = 0.5


class Edge:
    """One edge: its transaction layer, the functions it calls, and the parts it hands
    requests to (digest guard, subscriptions, REGISTER, PUBLISH)."""

    def __init__(
        self,
        functions: Functions,
        *,
        cfg: settings.Settings | None = None,
        clock: Callable[[], float] = time.time,
        queue: EdgeQueue | None = None,
    ) -> None:
        self.cfg = cfg or settings.get()
        self.functions = functions
        self.clock = clock  # wall clock: stored expiries, nonces, Date
        # Transaction timers must neither fire nor stall when the wall clock is stepped.
        self.monotonic: Callable[[], float] = time.monotonic
        # NOTIFY pacing too (NOTIFY_MIN_INTERVAL); its own attribute so that a test can move
        # it without firing transaction timers.
        self.pacing: Callable[[], float] = time.monotonic
        self.transactions = TransactionLayer()
        self.send_bytes: Callable[[Peer, bytes], bool] = lambda peer, data: False
        self.ports: dict[str, int] = {}
        self.edge_id = self.cfg.edge_id
        self._tasks: set[asyncio.Task[Any]] = set()
        self._outcomes: dict[ClientTransaction, asyncio.Future[int]] = {}
        self._next_sweep = 0.0
        self.stats: dict[str, int] = {"requests": 0, "notifies": 0, "notify_failures": 0}
        self.subscriptions = SubscriptionService(self, queue)
        self.digest_guard = DigestGuard(self, self.subscriptions.live_dialog)
        self.register_handler = RegisterHandler(self)
        self.publish_handler = PublishHandler(self)
        self.metrics = EdgeMetrics(self.cfg.edge_metrics_interval)

    # --- addresses -----------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.cfg.sip_advertised_host or self.cfg.sip_host

    def port_for(self, transport: str) -> int:
        return self.ports.get(transport, self.cfg.sip_tls_port if transport == "tls" else 5060)

    def contact(self, transport: str) -> str:
        uri = f"sip:{self.host}:{self.port_for(transport)}"
        return f"<{uri};transport={transport}>" if transport != "udp" else f"<{uri}>"

    def via(self, transport: str) -> Via:
        """The top Via of a request the edge sends, parsed already (its `raw` is the text)."""
        branch = new_branch()
        host, port, proto = self.host, self.port_for(transport), transport.upper()
        raw = f"SIP/2.0/{proto} {host}:{port};branch={branch};rport"
        return Via("SIP/2.0", proto, host, port, {"branch": branch, "rport": None}, raw)

    def attach(self, transports: Any) -> None:
        """Send through these transports; advertise the ports they got."""
        self.send_bytes = transports.send
        self.ports = dict(transports.ports)
        self.ports.setdefault("tcp", self.ports.get("udp", 5060))
        if not self.edge_id:
            self.edge_id = f"{self.host}:{self.ports.get('udp')}"

    async def start(self) -> None:
        """Resume this edge's stored dialogs and listen to its queue (see SubscriptionService)."""
        await self.subscriptions.start()

    async def shutdown(self) -> None:
        self.subscriptions.close()
        await self.subscriptions.release_pending()
        await self.subscriptions.record_synced()
        for task in list(self._tasks):
            task.cancel()

    # --- entry from the transports --------------------------------------------------------

    def on_message(self, message: Request | Response, peer: Peer) -> None:
        now = self.monotonic()
        if isinstance(message, Response):
            self._run(self.transactions.receive_response(message, now))
            return
        self._stamp_via(message, peer)
        if message.method not in SERVED_METHODS:
            self._answer_statelessly(message, peer)
            return
        self._run(
            self.transactions.receive_request(message, now, reliable=peer.reliable, dest=peer)
        )

    def _answer_statelessly(self, request: Request, peer: Peer) -> None:
        """A method the edge does not serve gets one answer and no transaction (RFC 3261
        §8.2.7): an INVITE server transaction would retransmit its 405 eleven times to a
        source nobody verified. Each retransmission of the request gets one answer again,
        which is no amplification. ACK never gets one."""
        self.stats["requests"] += 1
        if request.method == "ACK":
            return
        if request.method not in KNOWN_METHODS:
            response = make_response(request, 501, None, [("Allow", ALLOW)])
        elif request.method in ("CANCEL", "BYE"):
            response = make_response(request, 481)
        else:
            response = make_response(request, 405, None, [("Allow", ALLOW)])
        self.metrics.response(request.method, response)
        self.stats["stateless"] = self.stats.get("stateless", 0) + 1
        data = response.to_bytes()
        if within_amplification_limit(request, peer, len(data)):
            self.send_bytes(peer, data)

    def on_connection_lost(self, peer: Peer) -> None:
        self.subscriptions.on_connection_lost(peer)

    def on_timer(self) -> None:
        """Transaction timers at every tick; dialogs (expiry, lapses, throttle) twice a second,
        so that ten thousand dialogs cost little between two NOTIFYs."""
        self._run(self.transactions.on_timer(self.monotonic()))
        now = self.clock()
        if now < self._next_sweep:
            return
        self._next_sweep = now + DIALOG_SWEEP_SECONDS
        self.subscriptions.sweep(now)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _run(self, actions: list[Action]) -> None:
        """Carry out what the transaction layer asks for."""
        for action in actions:
            if isinstance(action, Send):
                if not self.send_bytes(action.dest, action.data):
                    tx = self._transaction_of(action.message)
                    if tx is not None:
                        self._run(self.transactions.transport_error(tx, self.monotonic()))
            elif isinstance(action, Deliver):
                if action.transaction is not None:  # an unmatched ACK gets no answer
                    self._handle(action.request, action.dest, action.transaction)
            elif isinstance(action, ResponseReceived):
                if action.response.status >= 200:
                    self._settle(action.transaction, action.response.status)
            elif isinstance(action, TimedOut):
                self._settle(action.transaction, 408)
            elif isinstance(action, TransportError):
                self._settle(action.transaction, 503)

    def _transaction_of(self, message: Request | Response) -> ClientTransaction | None:
        for tx in self._outcomes:
            if tx.request is message:
                return tx
        return None

    def _settle(self, tx: Any, status: int) -> None:
        future = self._outcomes.pop(tx, None)
        if future is not None and not future.done():
            future.set_result(status)

    async def request(self, request: Request, peer: Peer) -> int:
        """Send a request in a client transaction; the final status (408 on timeout)."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        tx, actions = self.transactions.send_request(
            request, self.monotonic(), reliable=peer.reliable, dest=peer
        )
        self._outcomes[tx] = future
        self._run(actions)
        return await future

    @staticmethod
    def _stamp_via(request: Request, peer: Peer) -> None:
        """RFC 3261 §18.2.1 and RFC 3581: note where the request really came from."""
        values = request.headers.get_all("Via")
        if not values:
            return
        vias = request.via  # parsed once, by the parser's checks
        via = vias[0]
        params = dict(via.params)
        if via.host != peer.host or via.has_rport:
            params["received"] = peer.host
        if via.has_rport:
            params["rport"] = str(peer.port)
        stamped = f"{via.protocol}/{via.transport} {via.sent_by}" + "".join(
            f";{k}" if v is None else f";{k}={v}" for k, v in params.items()
        )
        _, *rest_of_line = split_commas(values[0])
        # What parsing `stamped` would give, without parsing every Via a third time.
        top = Via(via.protocol, via.transport, via.host, via.port, params, stamped)
        request.headers.set(
            "Via", ", ".join([stamped, *rest_of_line, *values[1:]]), parsed=[top, *vias[1:]]
        )

    # --- requests -------------------------------------------------------------------------

    def _handle(self, request: Request, peer: Peer, tx: ServerTransaction) -> None:
        """Answer within SIP_REQUEST_DEADLINE: past it, a request still without its final
        response gets 503 and its work is abandoned; work after the response (NOTIFYs) goes on.
        One task and one loop timer per request (a task waiting on a shielded one was twice
        the asyncio work, per request, for the same deadline)."""
        self.stats["requests"] += 1
        limit = self.cfg.sip_request_deadline
        loop = asyncio.get_running_loop()
        work = loop.create_task(self._answer(request, peer, tx, time.monotonic() + limit))
        self._tasks.add(work)
        deadline = loop.call_later(limit, self._past_deadline, request, tx, work, limit)

        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            deadline.cancel()

        work.add_done_callback(done)

    def _past_deadline(
        self, request: Request, tx: ServerTransaction, work: asyncio.Task[None], limit: float
    ) -> None:
        if tx.state in (State.TRYING, State.PROCEEDING):
            work.cancel()
            self.stats["deadline_503"] = self.stats.get("deadline_503", 0) + 1
            logger.warning("%s not answered within %.1f s: 503", request.method, limit)
            self.respond(tx, self._unavailable(request))

    def _unavailable(self, request: Request) -> Response:
        return make_response(request, 503, None, [("Retry-After", retry_after(self.cfg))])

    async def _answer(
        self, request: Request, peer: Peer, tx: ServerTransaction, deadline: float
    ) -> None:
        DEADLINE.set(deadline)  # this task's own context: the function client reads it
        reply: Reply | None = None
        try:
            answer = await self._dispatch(request, peer)
            if isinstance(answer, Reply):  # a SUBSCRIBE: what follows once it is sent
                reply, response = answer, answer.response
            else:
                response = answer
        except Reject as rej:
            response = make_response(request, rej.status, rej.reason, rej.headers)
        except ParseError as err:
            response = make_response(request, err.status, err.reason_phrase,
                                     [("Warning", f'399 - "{err.reason}"')])  # fmt: skip
        except FunctionError as err:
            logger.warning("function call failed: %s", err)
            response = self._unavailable(request)
        except Exception:  # a bug must cost one request a 500, never the edge
            logger.exception("request handling failed")
            response = make_response(request, 500, None)
        self.respond(tx, response)
        if reply is not None and reply.then:
            await self.subscriptions.follow(reply.then)

    def respond(self, tx: ServerTransaction, response: Response) -> None:
        if self.cfg.sip_server_header:  # empty by default: less for scanners to fingerprint
            response.headers.add("Server", self.cfg.sip_server_header)
        data = b""  # serialized once, whether or not it had to be weighed
        if not tx.request.source_verified:
            data = response.to_bytes()
            if not within_amplification_limit(tx.request, tx.dest, len(data)):
                # An unverified UDP source: the same answer without its optional headers.
                self.stats["trimmed"] = self.stats.get("trimmed", 0) + 1
                response = make_response(tx.request, response.status, response.reason)
                data = b""
        self.metrics.response(tx.request.method, response)
        if response.status >= 200:
            DEADLINE.set(None)  # answered: what this task still does is not the phone's wait
        self._run(self.transactions.respond(tx, response, self.monotonic(), data))

    async def _dispatch(self, request: Request, peer: Peer) -> Response | Reply:
        """The request's answer: each handler returns it (or raises Reject); a SUBSCRIBE's
        comes with the work that follows it (its write, its NOTIFYs), done once it is sent."""
        method = request.method
        # RFC 3261 §8.2.2: the Request-URI's scheme, then Require, for every method we answer.
        if request.request_uri.scheme not in ("sip", "sips"):
            raise Reject(416)
        unsupported = [r for r in request.require if r.lower() not in SUPPORTED_EXTENSIONS]
        if unsupported:
            raise Reject(420, None, [("Unsupported", ", ".join(unsupported))])
        if method == "OPTIONS":
            return self._options(request)
        max_forwards = request.headers.get("Max-Forwards")
        if max_forwards is not None and max_forwards.strip() == "0":
            raise Reject(483)
        if method == "SUBSCRIBE":
            self.subscriptions.check(request)
        if method == "REGISTER":
            self.register_handler.check(request)
        identity = await self.digest_guard.authenticate(request, peer)
        if method == "REGISTER":
            return await self.register_handler.handle(request, peer, identity)
        if method == "SUBSCRIBE":
            return await self.subscriptions.handle(request, peer, identity)
        return await self.publish_handler.handle(request, peer, identity)

    def _options(self, request: Request) -> Response:
        return make_response(
            request,
            200,
            None,
            [
                ("Allow", ALLOW),
                ("Accept", f"{LIST_TYPE}, application/pidf+xml"),
                ("Accept-Encoding", "deflate"),
                ("Supported", "eventlist, recipient-list-subscribe"),
                ("Allow-Events", "presence"),
            ],
        )
