"""The edge's request handling: OPTIONS, REGISTER, SUBSCRIBE (RFC 6665, RFC 5367), PUBLISH.

It sits between the transports and the functions. Parsing, transactions and dialog state are
the sans-I/O pieces in `sip_edge.sip` and `sip_edge.dialog`; this module decides what to answer
and asks the functions for every lookup and every piece of state.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from typing import Any

from chalicelib import digest, errors, settings
from chalicelib.edge_contract import subscription_id, watcher_id
from chalicelib.observability import logger
from sip_edge.dialog import Peer, SubscriptionDialog, new_local_tag
from sip_edge.functions import FunctionError, Functions
from sip_edge.queue import EdgeQueue
from sip_edge.sip.message import (
    REASON_PHRASES,
    NameAddr,
    ParseError,
    Request,
    Response,
    make_response,
    parse_via,
    split_commas,
)
from sip_edge.sip.transaction import (
    Action,
    ClientTransaction,
    Deliver,
    ResponseReceived,
    Send,
    ServerTransaction,
    TimedOut,
    TransactionLayer,
    TransportError,
    new_branch,
)

ALLOW = "SUBSCRIBE, NOTIFY, PUBLISH, REGISTER, OPTIONS"
SUPPORTED_EXTENSIONS = frozenset({"eventlist", "recipient-list-subscribe"})
KNOWN_METHODS = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY",
     "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"}
)  # fmt: skip
LIST_TYPE = "application/resource-lists+xml"
AUTHENTICATED_METHODS = frozenset({"SUBSCRIBE", "REGISTER", "PUBLISH"})
DIALOG_SWEEP_SECONDS = 0.5


class Reject(Exception):
    """Answer the current request with `status` (and headers) and stop handling it."""

    def __init__(self, status: int, reason: str | None = None, headers: list[tuple[str, str]] = ()):
        super().__init__(reason or REASON_PHRASES.get(status, ""))
        self.status = status
        self.reason = reason
        self.headers = list(headers)


def aor_of(address: NameAddr) -> str:
    uri = address.uri
    return f"{uri.user_unescaped or ''}@{uri.host.lower()}"


class Edge:
    """One edge: its dialogs, its transaction layer, and the functions it calls."""

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
        self.clock = clock
        self.realm = self.cfg.sip_domain
        self.nonces = digest.Nonces(self.cfg.nonce_key, self.cfg.nonce_ttl_seconds)
        self.nonce_counts = digest.NonceCounts(self.cfg.nonce_ttl_seconds)
        self.digest_algorithms = tuple(a.upper() for a in self.cfg.sip_digest_algorithms)
        unknown = set(self.digest_algorithms) - set(digest.ALGORITHMS)
        if unknown or not self.digest_algorithms:
            raise ValueError(f"SIP_DIGEST_ALGORITHMS: unsupported {sorted(unknown)}")
        self.dialogs: dict[str, SubscriptionDialog] = {}
        self.transactions = TransactionLayer()
        self.send_bytes: Callable[[Peer, bytes], bool] = lambda peer, data: False
        self.ports: dict[str, int] = {}
        self.edge_id = self.cfg.edge_id
        self._tasks: set[asyncio.Task[Any]] = set()
        self._notify_locks: dict[str, asyncio.Lock] = {}
        self._outcomes: dict[ClientTransaction, asyncio.Future[int]] = {}
        self._flushing: set[str] = set()
        self._ending: set[str] = set()
        self._next_sweep = 0.0
        self.queue: EdgeQueue | None = queue
        self.stats: dict[str, int] = {"requests": 0, "notifies": 0, "notify_failures": 0}

    # --- addresses -----------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.cfg.sip_advertised_host or self.cfg.sip_host

    def port_for(self, transport: str) -> int:
        return self.ports.get(transport, self.cfg.sip_tls_port if transport == "tls" else 5060)

    def contact(self, transport: str) -> str:
        uri = f"sip:{self.host}:{self.port_for(transport)}"
        return f"<{uri};transport={transport}>" if transport != "udp" else f"<{uri}>"

    def via(self, transport: str) -> str:
        branch = new_branch()
        return (
            f"SIP/2.0/{transport.upper()} {self.host}:{self.port_for(transport)}"
            f";branch={branch};rport"
        )

    def attach(self, transports: Any) -> None:
        """Send through these transports; advertise the ports they got."""
        self.send_bytes = transports.send
        self.ports = dict(transports.ports)
        self.ports.setdefault("tcp", self.ports.get("udp", 5060))
        if not self.edge_id:
            self.edge_id = f"{self.host}:{self.ports.get('udp')}"

    async def start(self) -> None:
        """Resume the UDP dialogs this edge owned before a restart, and listen to its queue.

        Stream dialogs are dropped: their connections died with the old process, so their
        next refresh gets 481 and the phone subscribes again at once.
        """
        answer = await self.functions.call(
            "sip_subscriptions", {"op": "load_edge", "edge_id": self.edge_id}
        )
        for data in answer.get("subscriptions", []):
            dialog = SubscriptionDialog.from_json(data["dialog"], data["entries"])
            if dialog.peer.reliable:
                await self._delete(dialog)
                continue
            dialog.expires_at = float(data["expires_at"])
            self.dialogs[dialog.subscription_id] = dialog
        self.stats["resumed"] = len(self.dialogs)
        if self.queue is not None:
            await self.queue.open(self.edge_id)
            self._spawn(self._poll_queue())

    async def shutdown(self) -> None:
        if self.queue is not None:
            self.queue.close()
        for task in list(self._tasks):
            task.cancel()

    async def _poll_queue(self) -> None:
        """Long-poll this edge's queue: each message names resources to look at again."""
        assert self.queue is not None
        while True:
            try:
                changes = await self.queue.receive()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("edge queue poll failed; retrying")
                await asyncio.sleep(1)
                continue
            for change in changes:
                dialog = self.dialogs.get(change.get("subscription_id", ""))
                if dialog is None or dialog.terminated:
                    continue  # gone, or owned by another edge: nothing to do
                known = set(dialog.entries)
                dialog.dirty.update(u for u in change.get("uris", []) if u in known)

    # --- entry from the transports --------------------------------------------------------

    def on_message(self, message: Request | Response, peer: Peer) -> None:
        now = self.clock()
        if isinstance(message, Response):
            self._run(self.transactions.receive_response(message, now))
            return
        self._stamp_via(message, peer)
        self._run(
            self.transactions.receive_request(message, now, reliable=peer.reliable, dest=peer)
        )

    def on_connection_lost(self, peer: Peer) -> None:
        """Dialogs over a closed stream can no longer be notified: RFC 5626 flow failure."""
        for dialog in list(self.dialogs.values()):
            if dialog.peer == peer:
                dialog.terminated = True
                self._spawn(self._drop(dialog))

    def on_timer(self) -> None:
        """Transaction timers at every tick; dialogs (expiry, lapses, throttle) twice a second,
        so that ten thousand dialogs cost little between two NOTIFYs."""
        now = self.clock()
        self._run(self.transactions.on_timer(now))
        if now < self._next_sweep:
            return
        self._next_sweep = now + DIALOG_SWEEP_SECONDS
        for dialog in list(self.dialogs.values()):
            sub_id = dialog.subscription_id
            if dialog.terminated or sub_id in self._ending:
                continue
            if dialog.expires_at <= now:
                self._ending.add(sub_id)
                self._spawn(self._end(dialog, "timeout"))
                continue
            for uri, when in list(dialog.rechecks.items()):
                if when <= now:  # a mutual contact's registration or publication lapsed
                    del dialog.rechecks[uri]
                    dialog.dirty.add(uri)
            if dialog.dirty and now >= dialog.next_notify_at and sub_id not in self._flushing:
                self._flushing.add(sub_id)
                self._spawn(self._flush(dialog))

    def _spawn(self, coro: Any) -> None:
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
                        self._run(self.transactions.transport_error(tx, self.clock()))
            elif isinstance(action, Deliver):
                if action.transaction is not None:  # an unmatched ACK gets no answer
                    self._spawn(self._handle(action.request, action.dest, action.transaction))
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
            request, self.clock(), reliable=peer.reliable, dest=peer
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
        first, *rest_of_line = split_commas(values[0])
        via = parse_via(first)[0]
        params = dict(via.params)
        if via.host != peer.host or via.has_rport:
            params["received"] = peer.host
        if via.has_rport:
            params["rport"] = str(peer.port)
        stamped = f"{via.protocol}/{via.transport} {via.sent_by}" + "".join(
            f";{k}" if v is None else f";{k}={v}" for k, v in params.items()
        )
        request.headers.set("Via", ", ".join([stamped, *rest_of_line, *values[1:]]))

    # --- requests -------------------------------------------------------------------------

    async def _handle(self, request: Request, peer: Peer, tx: ServerTransaction) -> None:
        self.stats["requests"] += 1
        try:
            response = await self._dispatch(request, peer, tx)
        except Reject as rej:
            response = make_response(request, rej.status, rej.reason, rej.headers)
        except ParseError as err:
            response = make_response(request, err.status, err.reason_phrase,
                                     [("Warning", f'399 - "{err.reason}"')])  # fmt: skip
        except FunctionError as err:
            logger.warning("function call failed: %s", err)
            response = make_response(request, 503, None, [("Retry-After", "5")])
        except Exception:  # a bug must cost one request a 500, never the edge
            logger.exception("request handling failed")
            response = make_response(request, 500, None)
        if response is not None:
            self.respond(tx, response)

    def respond(self, tx: ServerTransaction, response: Response) -> None:
        response.headers.add("Server", "smart-contacts-edge")
        self._run(self.transactions.respond(tx, response, self.clock()))

    async def _dispatch(
        self, request: Request, peer: Peer, tx: ServerTransaction
    ) -> Response | None:
        method = request.method
        if method not in KNOWN_METHODS:
            raise Reject(501, None, [("Allow", ALLOW)])
        if method in ("CANCEL", "BYE"):
            raise Reject(481)
        # RFC 3261 §8.2.2: the Request-URI's scheme, then Require, for every method we answer.
        if request.request_uri.scheme not in ("sip", "sips"):
            raise Reject(416)
        unsupported = [r for r in request.require if r.lower() not in SUPPORTED_EXTENSIONS]
        if unsupported:
            raise Reject(420, None, [("Unsupported", ", ".join(unsupported))])
        if method == "OPTIONS":
            return self._options(request)
        if method not in AUTHENTICATED_METHODS:
            raise Reject(405, None, [("Allow", ALLOW)])
        max_forwards = request.headers.get("Max-Forwards")
        if max_forwards is not None and max_forwards.strip() == "0":
            raise Reject(483)
        if method == "SUBSCRIBE":
            self._check_subscribe(request)
        identity = await self.authenticate(request, peer)
        if method == "REGISTER":
            return await self._register(request, peer, identity)
        if method == "SUBSCRIBE":
            return await self._subscribe(request, peer, tx, identity)
        return await self._publish(request, peer, identity)

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

    # --- authentication (RFC 3261 §22, RFC 8760) ------------------------------------------

    async def authenticate(self, request: Request, peer: Peer) -> str:
        """The account the request proves, or Reject with a challenge or a 403."""
        claimed = aor_of(request.to if request.method == "REGISTER" else request.from_)
        if peer.host in self.cfg.sip_trusted_proxies:
            return claimed
        stale = False
        for proxy in (False, True):
            for cred in request.authorization(proxy=proxy):
                if not cred.is_digest or cred.get("realm") != self.realm:
                    continue
                # An algorithm the operator turned off is refused even with a valid answer.
                if (cred.get("algorithm") or "MD5").upper() not in self.digest_algorithms:
                    continue
                state = self.nonces.check(cred.get("nonce") or "", self.realm, self.clock())
                if state == "stale" and request.method == "SUBSCRIBE" and request.to.tag:
                    # Linphone 5.1 answers a stale challenge on an in-dialog refresh by dropping
                    # the dialog and re-sending the old credentials, then backs off 60 s. Inside
                    # a live dialog an expired nonce of ours will do if the digest verifies; for
                    # a dialog we no longer hold, 481 makes it subscribe again at once.
                    if not self._in_live_dialog(request):
                        raise Reject(481, "Subscription does not exist")
                    state = "ok"
                if state != "ok":
                    stale = stale or state == "stale"
                    continue
                nonce_used, nc = cred.get("nonce") or "", cred.get("nc")
                if self.nonce_counts.is_replay(nonce_used, nc):
                    stale = True  # an Authorization sent again verbatim: make it renew
                    continue
                answer = await self.functions.call(
                    "sip_auth",
                    {
                        "method": request.method,
                        "realm": self.realm,
                        "params": cred.params,
                        "source": peer.host,
                        "instance": next(
                            (c.param("+sip.instance") for c in request.contacts or []), None
                        ),
                    },
                )
                self._raise_function_error(answer)  # auth_blocked: 403 with Retry-After
                if answer.get("result") != "ok":
                    continue
                self.nonce_counts.record(nonce_used, nc, self.clock())
                if answer["aor"].lower() != claimed.lower():
                    raise Reject(403, "Identity does not match credentials")
                return answer["aor"]
        nonce = self.nonces.make(self.realm, self.clock())
        raise Reject(
            401,
            None,
            [
                ("WWW-Authenticate", digest.challenge(self.realm, nonce, alg, stale=stale))
                for alg in self.digest_algorithms
            ],
        )

    def _in_live_dialog(self, request: Request) -> bool:
        """A request inside one of our live dialogs (Call-ID and both tags match)."""
        dialog = self.dialogs.get(subscription_id(request.call_id, request.to.tag or ""))
        return (
            dialog is not None and not dialog.terminated and dialog.remote_tag == request.from_.tag
        )

    # --- SUBSCRIBE --------------------------------------------------------------------------

    def _check_subscribe(self, request: Request) -> None:
        event = request.event
        if event is None:
            raise Reject(400, "Missing Event header")
        if event.package.lower() != "presence":
            raise Reject(489, None, [("Allow-Events", "presence")])
        expires = request.expires
        if expires is not None and 0 < expires < self.cfg.subscribe_min_expires:
            raise Reject(423, None, [("Min-Expires", str(self.cfg.subscribe_min_expires))])
        if request.to.tag is None and request.body:
            ctype = request.content_type
            if ctype is None or ctype.mime.lower() != LIST_TYPE:
                raise Reject(415, None, [("Accept", LIST_TYPE)])
            if "recipient-list-subscribe" not in {r.lower() for r in request.require}:
                raise Reject(421, None, [("Require", "recipient-list-subscribe")])
            if "eventlist" not in {s.lower() for s in request.supported}:
                raise Reject(421, None, [("Require", "eventlist")])
        if any(e not in ("deflate", "identity") for e in request.content_encoding):
            raise Reject(415, None, [("Accept-Encoding", "deflate")])

    def _granted_expires(self, request: Request) -> int:
        expires = request.expires
        if expires is None:
            return self.cfg.subscribe_default_expires
        return min(expires, self.cfg.subscribe_max_expires)

    def profile_for(self, request: Request) -> str:
        if self.cfg.sip_profile in ("linphone", "rfc"):
            return self.cfg.sip_profile
        agent = (request.headers.get("User-Agent") or "").lower()
        return "linphone" if any(a in agent for a in self.cfg.sip_linphone_agents) else "rfc"

    async def _subscribe(
        self, request: Request, peer: Peer, tx: ServerTransaction, identity: str
    ) -> Response | None:
        now = self.clock()
        expires = self._granted_expires(request)
        to_tag = request.to.tag
        if to_tag is not None:
            sub_id = subscription_id(request.call_id, to_tag)
            dialog = self.dialogs.get(sub_id)
            if dialog is None or dialog.terminated or dialog.remote_tag != request.from_.tag:
                raise Reject(481, "Subscription does not exist")
            if dialog.subscriber != identity:
                raise Reject(403, "Not the subscriber of this dialog")
            if dialog.is_stale_request(request.cseq.seq):
                raise Reject(500, "CSeq out of order", [("Retry-After", "1")])
            dialog.refresh(request.cseq.seq, expires, now)
            dialog.peer = peer
            self.respond(tx, self._subscribe_ok(request, dialog, expires))
            if expires == 0:
                await self._end(dialog, "timeout")
            else:
                await self._save(dialog, refresh=True)
                await self._notify_full(dialog)
            return None
        return await self._new_subscription(request, peer, tx, identity, expires, now)

    async def _new_subscription(
        self,
        request: Request,
        peer: Peer,
        tx: ServerTransaction,
        identity: str,
        expires: int,
        now: float,
    ) -> Response | None:
        is_list = bool(request.body)
        accept = {e.lower() for v in request.headers.get_all("Accept-Encoding")
                  for e in split_commas(v)}  # fmt: skip
        contacts = request.contacts or []
        if not contacts:
            raise Reject(400, "Missing Contact header")
        local_tag = new_local_tag()
        dialog = SubscriptionDialog(
            subscription_id=subscription_id(request.call_id, local_tag),
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag or "",
            local_uri=_without_tag(request.headers.get("To") or ""),
            remote_uri=_without_tag(request.headers.get("From") or ""),
            remote_target=contacts[0].uri.raw,
            route_set=list(request.headers.get_all("Record-Route")),
            subscriber=identity,
            peer=peer,
            expires_at=now + expires,
            event_id=request.event.id if request.event else None,
            profile=self.profile_for(request),
            accept_deflate="deflate" in accept,
            is_list=is_list,
            device=contacts[0].param("+sip.instance") or contacts[0].uri.raw,
            remote_cseq=request.cseq.seq,
        )
        payload: dict[str, Any] = {
            "subscriber": identity,
            "profile": dialog.profile,
            "accept_encoding": sorted(accept),
            "version": 0,
            "list_uri": request.to.uri.raw,
        }
        if is_list:
            payload["list_b64"] = base64.b64encode(request.body).decode()
            payload["content_encoding"] = ",".join(request.content_encoding) or None
        else:
            payload["entries"] = [request.uri]
            payload["single"] = True
        result = await self.functions.call("presence_lookup", payload)
        self._raise_function_error(result)
        dialog.entries = list(result["entries"])
        self.dialogs[dialog.subscription_id] = dialog
        self.respond(tx, self._subscribe_ok(request, dialog, expires))
        if expires == 0:  # a fetch (RFC 6665 §4.4.3): one NOTIFY, then the dialog is over
            await self._send_bodies(dialog, result, reason="timeout")
            self._forget(dialog)
            return None
        await self._save(dialog, refresh=False)
        await self._send_bodies(dialog, result)
        return None

    def _subscribe_ok(self, request: Request, dialog: SubscriptionDialog, expires: int) -> Response:
        headers = [("Expires", str(expires)), ("Contact", self.contact(dialog.peer.transport))]
        if dialog.is_list:
            headers.append(("Require", "eventlist"))
        return make_response(request, 200, None, headers, to_tag=dialog.local_tag)

    @staticmethod
    def _raise_function_error(result: dict[str, Any]) -> None:
        error = result.get("error")
        if not error:
            return
        kind = errors.CATALOGUE.get(error.get("code", ""), errors.CATALOGUE["internal"])
        headers = list((error.get("headers") or {}).items())
        raise Reject(kind.sip_status, error.get("message") or kind.reason, headers)

    async def _lookup(
        self, dialog: SubscriptionDialog, entries: list[str], *, full_state: bool
    ) -> dict[str, Any]:
        """presence_lookup for resources of the dialog's stored list (no body to re-read)."""
        return await self.functions.call(
            "presence_lookup",
            {
                "subscriber": dialog.subscriber,
                "profile": dialog.profile,
                "accept_encoding": ["deflate"] if dialog.accept_deflate else [],
                "version": dialog.version,
                "entries": entries,
                "full_state": full_state,
                "single": not dialog.is_list,
                "list_uri": _uri_of(dialog.local_uri),
            },
        )

    async def _notify_full(self, dialog: SubscriptionDialog) -> None:
        result = await self._lookup(dialog, dialog.entries, full_state=True)
        if result.get("error"):
            await self._end(dialog, "noresource")
            return
        await self._send_bodies(dialog, result)

    async def _flush(self, dialog: SubscriptionDialog) -> None:
        """Send what changed among the dirty resources, in one partial NOTIFY (RFC 4662)."""
        try:
            uris = sorted(dialog.dirty)
            dialog.dirty.clear()
            result = await self._lookup(dialog, uris, full_state=False)
            if result.get("error"):
                return
            changed = [
                r for r in result["resources"] if dialog.last_states.get(r["uri"]) != _state(r)
            ]
            for r in result["resources"]:  # numbers still past the budget: ask again later
                if r.get("recheck_at"):
                    dialog.rechecks[r["uri"]] = float(r["recheck_at"])
            if not changed:
                return  # a replayed or stale change: the phone already knows this
            # A resource with no last state (a dialog resumed after a restart) may have been
            # a user: only full state takes it back on Linphone, so err on that side.
            removed = any(
                r["user"] is None and dialog.last_states.get(r["uri"]) != "-" for r in changed
            )
            policy = self.cfg.notify_full_state_on_removal
            if removed and (policy == "always" or policy == dialog.profile):
                await self._notify_full(dialog)
            else:
                await self._send_bodies(dialog, result)
        except FunctionError as exc:
            logger.warning("live update lookup failed: %s", exc)
            dialog.dirty.update(uris)  # try again at the next tick
        finally:
            self._flushing.discard(dialog.subscription_id)

    async def _send_bodies(
        self, dialog: SubscriptionDialog, result: dict[str, Any], reason: str | None = None
    ) -> None:
        bodies = result.get("bodies") or []
        dialog.version = int(result.get("version", dialog.version))
        for resource in result.get("resources", []):
            dialog.last_states[resource["uri"]] = _state(resource)
            if resource.get("recheck_at"):
                dialog.rechecks[resource["uri"]] = float(resource["recheck_at"])
            else:
                dialog.rechecks.pop(resource["uri"], None)
        dialog.next_notify_at = self.clock() + self.cfg.notify_min_interval
        for i, part in enumerate(bodies):
            last = i == len(bodies) - 1
            ok = await self.notify(
                dialog,
                body=base64.b64decode(part["body_b64"]),
                content_type=part["content_type"],
                content_encoding=part.get("content_encoding"),
                reason=reason if last else None,
            )
            if not ok:
                return
        if reason is None and bodies:
            await self._save(dialog, refresh=True)

    async def notify(
        self,
        dialog: SubscriptionDialog,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        content_encoding: str | None = None,
        reason: str | None = None,
    ) -> bool:
        """Send one NOTIFY and wait for its outcome; a failure ends the subscription."""
        lock = self._notify_locks.setdefault(dialog.subscription_id, asyncio.Lock())
        async with lock:  # one NOTIFY transaction at a time per dialog, in CSeq order
            if dialog.terminated and reason is None:
                return False
            request = dialog.notify(
                via=self.via(dialog.peer.transport),
                contact=self.contact(dialog.peer.transport),
                now=self.clock(),
                body=body,
                content_type=content_type,
                content_encoding=content_encoding,
                reason=reason,
            )
            self.stats["notifies"] += 1
            status = await self.request(request, dialog.peer)
        if 200 <= status < 300:
            return True
        self.stats["notify_failures"] += 1
        if reason is None:
            # RFC 6665 §4.2.2: 481, a timeout or a flow failure end the subscription.
            dialog.terminated = True
            await self._drop(dialog)
        return False

    async def _end(self, dialog: SubscriptionDialog, reason: str) -> None:
        if not dialog.terminated:
            await self.notify(dialog, reason=reason)
        dialog.terminated = True
        await self._drop(dialog)

    async def _drop(self, dialog: SubscriptionDialog) -> None:
        self._forget(dialog)
        await self._delete(dialog)

    def _forget(self, dialog: SubscriptionDialog) -> None:
        self.dialogs.pop(dialog.subscription_id, None)
        self._ending.discard(dialog.subscription_id)
        self._notify_locks.pop(dialog.subscription_id, None)

    async def _save(self, dialog: SubscriptionDialog, *, refresh: bool) -> None:
        """Store the dialog through the functions, so a restarted edge can resume it."""
        payload: dict[str, Any] = {
            "op": "refresh" if refresh else "save",
            "subscription_id": dialog.subscription_id,
            "expires_at": int(dialog.expires_at),
            "version": dialog.version,
            "dialog": dialog.to_json(),
        }
        if not refresh:
            payload.update(
                edge_id=self.edge_id,
                subscriber=dialog.subscriber,
                entries=dialog.entries,
                watcher=watcher_id(dialog.subscriber, dialog.device),
            )
        try:
            await self.functions.call("sip_subscriptions", payload)
        except FunctionError as exc:
            # The dialog still works from memory; only a restart would lose it.
            logger.warning("could not store subscription: %s", exc)

    async def _delete(self, dialog: SubscriptionDialog) -> None:
        try:
            await self.functions.call(
                "sip_subscriptions", {"op": "delete", "subscription_id": dialog.subscription_id}
            )
        except FunctionError as exc:
            logger.warning("could not delete subscription: %s", exc)

    # --- REGISTER (RFC 3261 §10.3) ----------------------------------------------------------

    async def _register(self, request: Request, peer: Peer, identity: str) -> Response:
        contacts = request.contacts
        payload: dict[str, Any] = {
            "op": "register",
            "aor": identity,
            "call_id": request.call_id,
            "cseq": request.cseq.seq,
            "expires_header": request.expires,
            "wildcard": contacts is None,
            "source": f"{peer.transport}:{peer.host}:{peer.port}",
            "edge_id": self.edge_id,
            "contacts": [
                {
                    "uri": c.uri.raw,
                    "expires": int(c.param("expires")) if c.param("expires") else None,
                    "instance": c.param("+sip.instance"),
                    "params": "".join(
                        f";{k}" if v is None else f";{k}={v}"
                        for k, v in c.params.items()
                        if k not in ("expires", "q")
                    ),
                }
                for c in contacts or []
            ],
        }
        if not contacts and contacts is not None:
            payload["op"] = "bindings"
        result = await self.functions.call("sip_registrar", payload)
        self._raise_function_error(result)
        headers = [
            ("Contact", f"<{b['uri']}>{b['params']};expires={b['expires']}")
            for b in result["bindings"]
        ]
        headers.append(("Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())))
        return make_response(request, 200, None, headers)

    # --- PUBLISH (RFC 3903): see the live-update work -------------------------------------

    async def _publish(self, request: Request, peer: Peer, identity: str) -> Response | None:
        event = request.event
        if event is None or event.package.lower() != "presence":
            raise Reject(489, None, [("Allow-Events", "presence")])
        if request.body:
            ctype = request.content_type
            if ctype is None or ctype.mime.lower() != "application/pidf+xml":
                raise Reject(415, None, [("Accept", "application/pidf+xml")])
            if request.content_encoding:
                raise Reject(415, None, [("Accept-Encoding", "identity")])
        result = await self.functions.call(
            "sip_publish",
            {
                "op": "publish",
                "call_id": request.call_id,
                "cseq": request.cseq.seq,
                "aor": identity,
                "if_match": request.headers.get("SIP-If-Match"),
                "expires": request.expires,
                "body_b64": base64.b64encode(request.body).decode() if request.body else None,
            },
        )
        self._raise_function_error(result)
        headers = [("Expires", str(result["expires"]))]
        if result["expires"]:
            headers.insert(0, ("SIP-ETag", result["etag"]))
        return make_response(request, 200, None, headers)


def _state(resource: dict[str, Any]) -> str:
    """What the phone sees of one resource: not a user ("-"), or its contact and status."""
    return "-" if resource.get("user") is None else f"{resource['user']}|{resource.get('status')}"


def _uri_of(name_addr: str) -> str:
    from sip_edge.sip.message import parse_name_addr

    return parse_name_addr(name_addr).uri.raw


def _without_tag(value: str) -> str:
    import re

    return re.sub(r";\s*tag\s*=\s*[^;,\s]+", "", value, flags=re.I).strip()
