"""Presence subscriptions (RFC 6665, RFC 4662, RFC 5367): SUBSCRIBE handling, the dialogs this
edge holds, the NOTIFYs it sends, their storage for a restart, and live updates from its queue.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from typing import Any

from chalicelib import edge_contract as contract
from chalicelib.edge_contract import subscription_id, watcher_id
from chalicelib.observability import logger
from sip_edge.dialog import HASH_KEY, Peer, SubscriptionDialog, new_local_tag
from sip_edge.functions import FunctionError
from sip_edge.handling import EdgeServices, Reject, raise_function_error
from sip_edge.presence import record
from sip_edge.queue import EdgeQueue
from sip_edge.sip.headers import split_commas
from sip_edge.sip.message import Request, Response, make_response
from sip_edge.sip.transaction import ServerTransaction
from sip_edge.sip.values import parse_name_addr

LIST_TYPE = "application/resource-lists+xml"


class DialogTable(dict[str, SubscriptionDialog]):
    """The edge's dialogs by subscription id, counting each account's as they come and go:
    the per-account cap is checked at every new SUBSCRIBE, and counting by a walk over
    every dialog made that cost grow with the edge's dialogs (it did, by tens of thousands,
    after an overload left dialogs open)."""

    def __init__(self) -> None:
        super().__init__()
        self._held: dict[str, int] = {}

    def held_by(self, subscriber: str) -> int:
        return self._held.get(subscriber, 0)

    def _count(self, dialog: SubscriptionDialog, step: int) -> None:
        held = self._held.get(dialog.subscriber, 0) + step
        if held > 0:
            self._held[dialog.subscriber] = held
        else:
            self._held.pop(dialog.subscriber, None)

    def __setitem__(self, key: str, dialog: SubscriptionDialog) -> None:
        old = self.get(key)
        if old is not None:
            self._count(old, -1)
        super().__setitem__(key, dialog)
        self._count(dialog, 1)

    def __delitem__(self, key: str) -> None:
        self._count(self[key], -1)
        super().__delitem__(key)

    def setdefault(self, key: str, default: SubscriptionDialog) -> SubscriptionDialog:
        if key not in self:
            self[key] = default
        return self[key]

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            dialog = super().pop(key)
            self._count(dialog, -1)
            return dialog
        return super().pop(key, *default)

    def clear(self) -> None:
        super().clear()
        self._held.clear()

    def update(self, *args: Any, **kwargs: Any) -> None:  # dict's own would skip the counts
        for key, dialog in dict(*args, **kwargs).items():
            self[key] = dialog


class SubscriptionService:
    """The subscription dialogs of one edge and everything that happens to them."""

    def __init__(self, edge: EdgeServices, queue: EdgeQueue | None = None) -> None:
        self.edge = edge
        self.queue = queue
        self.dialogs = DialogTable()
        self._notify_locks: dict[str, asyncio.Lock] = {}
        # Dialogs being brought up to date, and those waiting their turn (ready, in order):
        # at most EDGE_NOTIFY_CONCURRENCY at once, so a burst (a popular contact's change,
        # the full states owed after a reload) neither takes every function slot from the
        # phones' requests nor fails most of its lookups against the bulkhead.
        self._flushing: set[str] = set()
        self._ready: dict[str, None] = {}  # insertion-ordered: a queue with membership
        self._ending: set[str] = set()
        # Queue messages whose change is not yet in a NOTIFY: deleted only once it went out
        # (or the dialog is gone), so an edge killed meanwhile loses nothing.
        self._receipts: dict[str, list[str]] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume the UDP dialogs this edge owned before a restart, and listen to its queue.

        The reload waits at most EDGE_RELOAD_WAIT seconds; past that (an outage, a slow
        backend) the edge serves new requests while it goes on retrying with backoff, and
        resumes the dialogs once they come. Stream dialogs are dropped: their connections
        died with the old process, so their next refresh gets 481 and the phone subscribes
        again at once.
        """
        reload = asyncio.get_running_loop().create_task(self._resume())
        self.edge.spawn(self._watch(reload))
        try:
            await asyncio.wait_for(asyncio.shield(reload), self.edge.cfg.edge_reload_wait)
        except TimeoutError:
            logger.warning("dialogs not reloaded yet: serving meanwhile, still retrying")
        if self.queue is not None:
            await self.queue.open(self.edge.edge_id)
            self.edge.spawn(self._poll_queue())

    @staticmethod
    async def _watch(reload: asyncio.Task[None]) -> None:
        await reload  # keeps the reload owned (and cancelled at shutdown) by the edge

    async def _resume(self) -> None:
        started = time.monotonic()
        cursor: str | None = None
        resumed: dict[str, SubscriptionDialog] = {}
        pages = 0
        while True:
            pages += 1
            answer = await self._load_edge(cursor)
            for data in answer.get("subscriptions", []):
                keys = base64.b64decode(data.get("entry_keys_b64") or "")
                try:
                    stored = record.read(data["dialog"])
                except (ValueError, TypeError, KeyError) as exc:
                    logger.warning("stored dialog unreadable (%s): dropped", exc)
                    stored = None
                if stored is None:
                    await self._delete(data["subscription_id"])
                    continue
                dialog = SubscriptionDialog.from_record(
                    stored, None if keys else data.get("entries", []),
                    inline_limit=self._inline_limit, keys=keys,
                )  # fmt: skip
                if dialog.peer.reliable:
                    await self._delete(dialog.subscription_id)
                    continue
                dialog.expires_at = float(data["expires_at"])
                # Stored before its phone answered a full state: the old edge may have
                # stopped before sending it. Full state once more is harmless; none is not.
                dialog.resync = not dialog.synced
                resumed[dialog.subscription_id] = dialog
            cursor = answer.get("next")
            if not cursor:
                break
        for sub_id, dialog in resumed.items():
            self.dialogs.setdefault(sub_id, dialog)  # a dialog made meanwhile stays as is
        self.edge.stats["resumed"] = len(resumed)
        # The one sign, in the logs, that a restarted edge holds its dialogs again.
        logger.info(
            "dialogs reloaded",
            extra={"dialogs": len(resumed), "pages": pages,
                   "seconds": round(time.monotonic() - started, 3)},
        )  # fmt: skip

    @property
    def _inline_limit(self) -> int:
        return self.edge.cfg.edge_dialog_inline_entries_bytes

    async def _load_edge(self, cursor: str | None) -> contract.SubscriptionsAnswer:
        """One page of this edge's stored dialogs; while the backend is down or answers an
        error, try again with backoff (an edge restarted in an outage must not give up its
        dialogs: their phones would hear nothing until they subscribe again)."""
        pause = 0.5
        payload: contract.SubscriptionLoad = {
            "op": "load_edge",
            "edge_id": self.edge.edge_id,
            "inline_limit": self._inline_limit,
            "keys_key_hex": HASH_KEY.hex(),
        }
        if cursor:
            payload["cursor"] = cursor
        while True:
            try:
                answer = await contract.SIP_SUBSCRIPTIONS.ask(self.edge.functions, payload)
                if "error" not in answer:
                    return answer
                problem: object = answer["error"]
            except FunctionError as exc:
                problem = exc
            logger.warning("could not load this edge's dialogs (%s); retrying", problem)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)

    def close(self) -> None:
        if self.queue is not None:
            self.queue.close()

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
            done: list[str] = []
            for change, receipt in changes:
                if change.get("kind") == "revoke":
                    self.revoke(change)  # the final NOTIFYs are on their way
                    done.append(receipt)
                    continue
                dialog = self.dialogs.get(change.get("subscription_id", ""))
                if dialog is None or dialog.terminated:
                    done.append(receipt)  # gone, or owned by another edge: nothing to do
                    continue
                dialog.dirty.update(dialog.holding(change.get("uris", [])))
                self._receipts.setdefault(dialog.subscription_id, []).append(receipt)
            await self.queue.ack(done)

    async def _ack(self, subscription_id: str, receipts: list[str] | None = None) -> None:
        if receipts is None:
            receipts = self._receipts.pop(subscription_id, [])
        if self.queue is not None and receipts:
            await self.queue.ack(receipts)

    async def record_synced(self) -> int:
        """At shutdown: store the dialogs whose phones answered a full state since their last
        write (new dialogs, mostly), so the next edge owes them none; EDGE_NOTIFY_CONCURRENCY
        at a time, for at most EDGE_STOP_WAIT seconds. Answers how many were stored. Stream
        dialogs are left out: their connections end with this edge, and the next drops them."""
        pending = [d for d in self.dialogs.values() if d.synced and not d.synced_stored
                   and not d.terminated and not d.peer.reliable]  # fmt: skip
        gate = asyncio.Semaphore(max(1, self.edge.cfg.edge_notify_concurrency))

        async def store(dialog: SubscriptionDialog) -> None:
            async with gate:
                await self._save(dialog, refresh=True)

        try:
            await asyncio.wait_for(
                asyncio.gather(*(store(d) for d in pending)), self.edge.cfg.edge_stop_wait
            )
        except TimeoutError:
            logger.warning("stopped before storing every synced dialog; the next edge resyncs")
        stored = sum(d.synced_stored for d in pending)
        self.edge.stats["synced_at_stop"] = stored
        return stored

    async def release_pending(self) -> None:
        """At shutdown: changes not yet notified go back to the queue for the next edge."""
        receipts = [r for rs in self._receipts.values() for r in rs]
        self._receipts.clear()
        if self.queue is not None:
            await self.queue.release(receipts)

    # --- revocation: an account disabled, deleted or recovered ------------------------------

    def revoke(self, message: dict[str, Any]) -> int:
        """End the dialogs a `revoke` message lists (edge_contract.Revocation), each with a
        final NOTIFY `Subscription-State: terminated;reason=...`, at once (no throttle). Only
        dialogs of the subscriber it names are touched. Answers how many end."""
        subscriber = str(message.get("subscriber") or "").lower()
        reason = message.get("reason")
        reason = reason if reason in ("rejected", "deactivated") else "rejected"
        ended = 0
        for sub_id in message.get("subscription_ids") or []:
            dialog = self.dialogs.get(str(sub_id))
            if (
                dialog is None
                or dialog.terminated
                or sub_id in self._ending
                or dialog.subscriber.lower() != subscriber
            ):
                continue
            self._ending.add(dialog.subscription_id)
            self.edge.spawn(self._end(dialog, reason))
            ended += 1
        self.edge.stats["revoked"] = self.edge.stats.get("revoked", 0) + ended
        return ended

    def on_connection_lost(self, peer: Peer) -> None:
        """Dialogs over a closed stream can no longer be notified: RFC 5626 flow failure."""
        for dialog in list(self.dialogs.values()):
            if dialog.peer == peer:
                dialog.terminated = True
                self.edge.spawn(self._drop(dialog))

    def sweep(self, now: float) -> None:
        """End expired dialogs, mark lapsed resources, and flush what changed if the NOTIFY
        throttle allows."""
        for dialog in list(self.dialogs.values()):
            sub_id = dialog.subscription_id
            if dialog.terminated or sub_id in self._ending:
                continue
            if dialog.expires_at <= now:
                self._ending.add(sub_id)
                self.edge.spawn(self._end(dialog, "timeout"))
                continue
            for uri, when in list(dialog.rechecks.items()):
                if when <= now:  # a mutual contact's registration or publication lapsed
                    del dialog.rechecks[uri]
                    dialog.dirty.add(uri)
            ready = dialog.owes_notify and self.edge.pacing() >= dialog.next_notify_at
            if ready and sub_id not in self._flushing:
                self._ready.setdefault(sub_id)
        self._start_flushes()

    def _start_flushes(self) -> None:
        """Start the next ready dialogs' updates, up to EDGE_NOTIFY_CONCURRENCY at once."""
        limit = self.edge.cfg.edge_notify_concurrency
        while self._ready and len(self._flushing) < limit:
            sub_id = next(iter(self._ready))
            del self._ready[sub_id]
            dialog = self.dialogs.get(sub_id)
            if dialog is None or dialog.terminated or not dialog.owes_notify:
                continue
            self._flushing.add(sub_id)
            self.edge.spawn(self._flush(dialog))

    # --- SUBSCRIBE ---------------------------------------------------------------------------

    def live_dialog(self, request: Request) -> SubscriptionDialog | None:
        """The live dialog of ours a request is in (Call-ID and both tags match), if any."""
        dialog = self.dialogs.get(subscription_id(request.call_id, request.to.tag or ""))
        if dialog is None or dialog.terminated or dialog.remote_tag != request.from_.tag:
            return None
        return dialog

    def check(self, request: Request) -> None:
        event = request.event
        if event is None:
            raise Reject(400, "Missing Event header")
        if event.package.lower() != "presence":
            raise Reject(489, None, [("Allow-Events", "presence")])
        expires = request.expires
        if expires is not None and 0 < expires < self.edge.cfg.subscribe_min_expires:
            raise Reject(423, None, [("Min-Expires", str(self.edge.cfg.subscribe_min_expires))])
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
            return self.edge.cfg.subscribe_default_expires
        return min(expires, self.edge.cfg.subscribe_max_expires)

    def profile_for(self, request: Request) -> str:
        if self.edge.cfg.sip_profile in ("linphone", "rfc"):
            return self.edge.cfg.sip_profile
        agent = (request.headers.get("User-Agent") or "").lower()
        return "linphone" if any(a in agent for a in self.edge.cfg.sip_linphone_agents) else "rfc"

    async def handle(
        self, request: Request, peer: Peer, tx: ServerTransaction, identity: str
    ) -> Response | None:
        now = self.edge.clock()
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
            self.edge.respond(tx, self._subscribe_ok(request, dialog, expires))
            if expires == 0:
                await self._end(dialog, "timeout")
            else:
                await self._notify_full(dialog, store=True)
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
        cap = self.edge.cfg.subscribe_max_dialogs_per_account
        held = self.dialogs.held_by(identity)
        if held >= cap and expires:
            raise Reject(403, f"Too many subscriptions (at most {cap} per account)")
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
            user_agent=(request.headers.get("User-Agent") or "")[: contract.USER_AGENT_MAX],
            remote_cseq=request.cseq.seq,
        )
        payload: contract.PresenceLookupRequest = {
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
        result = await contract.PRESENCE_LOOKUP.ask(self.edge.functions, payload)
        if "error" in result:
            raise_function_error(result)
            raise Reject(500)  # an empty refusal: the function is broken
        entries = list(result["entries"])
        dialog.keep_entries(entries, self._inline_limit)
        self.dialogs[dialog.subscription_id] = dialog
        self.edge.respond(tx, self._subscribe_ok(request, dialog, expires))
        if expires == 0:  # a fetch (RFC 6665 §4.4.3): one NOTIFY, then the dialog is over
            await self._send_bodies(dialog, result, reason="timeout")
            self._forget(dialog)
            return None
        # Stored before the first NOTIFYs, so that a change queued meanwhile finds the dialog,
        # and as they will leave it; if they fail, the dialog ends and is deleted, and a
        # restart in between only skips numbers.
        await self._save(dialog, refresh=False, entries=entries, notifying=result)
        await self._send_bodies(dialog, result, record=False)
        return None

    def _subscribe_ok(self, request: Request, dialog: SubscriptionDialog, expires: int) -> Response:
        headers = [("Expires", str(expires)), ("Contact", self.edge.contact(dialog.peer.transport))]
        if dialog.is_list:
            headers.append(("Require", "eventlist"))
        return make_response(request, 200, None, headers, to_tag=dialog.local_tag)

    async def _presence_lookup(
        self, dialog: SubscriptionDialog, entries: list[str] | None, *, full_state: bool
    ) -> contract.PresenceLookupAnswer | contract.ErrorAnswer:
        """presence_lookup for resources of the dialog's stored list (no body to re-read);
        `entries` None: the whole list, as the function stored it (the edge keeps its keys)."""
        lookup: contract.PresenceLookupRequest = {
            "subscriber": dialog.subscriber,
            "profile": dialog.profile,
            "accept_encoding": ["deflate"] if dialog.accept_deflate else [],
            "version": dialog.version,
            "full_state": full_state,
            "single": not dialog.is_list,
            "list_uri": _uri_of(dialog.local_uri),
        }
        if entries is None:
            lookup["subscription_id"] = dialog.subscription_id
        else:
            lookup["entries"] = entries
        return await contract.PRESENCE_LOOKUP.ask(self.edge.functions, lookup)

    async def _notify_full(self, dialog: SubscriptionDialog, *, store: bool = False) -> None:
        """A full-state NOTIFY. `store` (a refresh SUBSCRIBE): the refreshed dialog is stored
        with that NOTIFY's CSeq and version already, one write for both (the refresh is then
        1 WRU in all); stored as it is if the lookup fails, and the phone, which has its 200,
        gets the full state once a lookup answers again (`resync`, at the sweeps)."""
        try:
            result = await self._presence_lookup(dialog, dialog.entries, full_state=True)
        except FunctionError as exc:
            if not store:
                raise
            logger.warning("refresh lookup failed (%s): its full state will follow", exc)
            dialog.resync = True
            await self._save(dialog, refresh=True)
            return
        if "error" in result:
            await self._end(dialog, "noresource")
            return
        if store:
            await self._save(dialog, refresh=True, notifying=result)
        await self._send_bodies(dialog, result, record=not store)

    async def _flush(self, dialog: SubscriptionDialog) -> None:
        """Send what changed among the dirty resources, in one partial NOTIFY (RFC 4662), or
        the full state the dialog is owed (`resync`), which covers them too."""
        receipts = self._receipts.pop(dialog.subscription_id, [])
        uris = sorted(dialog.dirty)
        dialog.dirty.clear()
        try:
            if dialog.resync:
                await self._notify_full(dialog)
                await self._ack(dialog.subscription_id, receipts)
                return
            result = await self._presence_lookup(dialog, uris, full_state=False)
            if "error" in result:
                await self._ack(dialog.subscription_id, receipts)
                return
            changed = [r for r in result["resources"] if dialog.last_state(r["uri"]) != _state(r)]
            for r in result["resources"]:  # numbers still past the budget: ask again later
                if recheck_at := r.get("recheck_at"):
                    dialog.rechecks[r["uri"]] = float(recheck_at)
            if not changed:
                await self._ack(dialog.subscription_id, receipts)
                return  # a replayed or stale change: the phone already knows this
            # A resource with no last state (a dialog resumed after a restart) may have been
            # a user: only full state takes it back on Linphone, so err on that side.
            removed = any(r["user"] is None and dialog.last_state(r["uri"]) != "-" for r in changed)
            policy = self.edge.cfg.notify_full_state_on_removal
            if removed and (policy == "always" or policy == dialog.profile):
                await self._notify_full(dialog)
            else:
                await self._send_bodies(dialog, result)
            # Sent (or the NOTIFY failed and the dialog is gone): either way, done with these.
            await self._ack(dialog.subscription_id, receipts)
        except FunctionError as exc:
            logger.warning("live update lookup failed: %s", exc)
            dialog.dirty.update(uris)  # try again at the next tick
            self._receipts.setdefault(dialog.subscription_id, []).extend(receipts)
        finally:
            self._flushing.discard(dialog.subscription_id)
            self._start_flushes()

    async def _send_bodies(
        self,
        dialog: SubscriptionDialog,
        result: contract.PresenceLookupAnswer,
        reason: str | None = None,
        *,
        record: bool = True,
    ) -> None:
        """Send a lookup's NOTIFY bodies in order; then (`record`) store the new version."""
        bodies = result.get("bodies") or []
        dialog.version = int(result.get("version", dialog.version))
        if bodies and bodies[0].get("full_state"):
            dialog.told = True  # every entry's state goes out: missing from last_states = "-"
        for resource in result.get("resources", []):
            dialog.remember(resource["uri"], _state(resource))
            if recheck_at := resource.get("recheck_at"):
                dialog.rechecks[resource["uri"]] = float(recheck_at)
            else:
                dialog.rechecks.pop(resource["uri"], None)
        dialog.next_notify_at = self.edge.pacing() + self.edge.cfg.notify_min_interval
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
        if bodies and bodies[0].get("full_state"):
            dialog.synced, dialog.resync = True, False
        if reason is None and bodies and record:
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
                via=self.edge.via(dialog.peer.transport),
                contact=self.edge.contact(dialog.peer.transport),
                now=self.edge.clock(),
                body=body,
                content_type=content_type,
                content_encoding=content_encoding,
                reason=reason,
            )
            if self.edge.cfg.sip_server_header:
                request.headers.add("User-Agent", self.edge.cfg.sip_server_header)
            self.edge.stats["notifies"] += 1
            status = await self.edge.request(request, dialog.peer)
        self.edge.metrics.notify(200 <= status < 300)
        if 200 <= status < 300:
            return True
        self.edge.stats["notify_failures"] += 1
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
        await self._delete(dialog.subscription_id)

    def _forget(self, dialog: SubscriptionDialog) -> None:
        if self._receipts.get(dialog.subscription_id):
            self.edge.spawn(self._ack(dialog.subscription_id))  # the dialog is gone
        self.dialogs.pop(dialog.subscription_id, None)
        self._ending.discard(dialog.subscription_id)
        self._notify_locks.pop(dialog.subscription_id, None)

    async def _save(
        self,
        dialog: SubscriptionDialog,
        *,
        refresh: bool,
        entries: list[str] | None = None,
        notifying: contract.PresenceLookupAnswer | None = None,
    ) -> None:
        """Store the dialog through the functions, so a restarted edge can resume it; a new
        dialog (not `refresh`) stores its `entries` too. `notifying`: a lookup whose NOTIFY
        bodies are about to go out; store the dialog as they will leave it (their CSeqs used,
        the RLMI version the lookup gave), so sending them needs no second write."""
        stored = dialog.to_record()
        if notifying is not None:
            stored["version"] = notifying["version"]
            stored["local_cseq"] = dialog.local_cseq + len(notifying["bodies"])
        payload: contract.SubscriptionSave | contract.SubscriptionRefresh
        if refresh:
            payload = {
                "op": "refresh",
                "subscription_id": dialog.subscription_id,
                "expires_at": int(dialog.expires_at),
                "version": stored["version"],
                "dialog": stored,
            }
        else:
            entries = entries or []
            payload = {
                "op": "save",
                "subscription_id": dialog.subscription_id,
                "edge_id": self.edge.edge_id,
                "subscriber": dialog.subscriber,
                "watcher": watcher_id(
                    dialog.subscriber, dialog.device, "" if dialog.is_list else entries[0]
                ),
                "expires_at": int(dialog.expires_at),
                "version": stored["version"],
                "dialog": stored,
                "entries": entries,
            }
        try:
            answer = await contract.SIP_SUBSCRIPTIONS.ask(self.edge.functions, payload)
            if "error" in answer:
                raise FunctionError(str(answer["error"]))
            dialog.synced_stored = bool(stored["synced"])
        except FunctionError as exc:
            # The dialog still works from memory; only a restart would lose it. A list kept
            # as keys alone was stored nowhere: the edge keeps it whole, its only copy.
            logger.warning("could not store subscription: %s", exc)
            if not refresh and dialog.entries is None:
                dialog.keep_entries(entries or [], None)

    async def _delete(self, subscription_id: str) -> None:
        try:
            delete: contract.SubscriptionDelete = {
                "op": "delete",
                "subscription_id": subscription_id,
            }
            await contract.SIP_SUBSCRIPTIONS.ask(self.edge.functions, delete)
        except FunctionError as exc:
            logger.warning("could not delete subscription: %s", exc)


def _state(resource: contract.ResourceAnswer) -> str:
    """What the phone sees of one resource: not a user ("-"), or its contact and status."""
    return "-" if resource.get("user") is None else f"{resource['user']}|{resource.get('status')}"


def _uri_of(name_addr: str) -> str:
    return parse_name_addr(name_addr).uri.raw


def _without_tag(value: str) -> str:
    return re.sub(r";\s*tag\s*=\s*[^;,\s]+", "", value, flags=re.I).strip()
