"""The presence core: the subscription dialogs of one edge and everything that happens to them,
as plain state without I/O (as `sip_edge.sip.transaction` is for SIP transactions).

Events come in as method calls: a SUBSCRIBE (`subscribe`, then `opened` with its first
lookup), the outcome of an action (`looked_up`, `lookup_failed`, `stored`, `notified`), queue
messages (`queue_messages`: changes and revocations), a lost connection, a page of stored
dialogs at a reload, a tick of the sweep, a stop. Each answers the actions its driver
(`sip_edge.subscription_service`) carries out (`sip_edge.presence.actions`): call a function,
send a NOTIFY, acknowledge or release queue messages. Time comes from the clocks it is given.

A dialog's state (`DialogState`), and what moves it::

    (new SUBSCRIBE)  -> ACTIVE           the dialog opens (a fetch, Expires: 0, opens ENDING)
    (reload)         -> OWES_FULL_STATE  stored before its phone answered a full state
    ACTIVE           -> OWES_FULL_STATE  a refresh whose full-state lookup failed
    OWES_FULL_STATE  -> ACTIVE           a full state went out and was answered
    ACTIVE, OWES_... -> ENDING           expiry, un-SUBSCRIBE, revocation, a lookup refused
    ENDING           -> TERMINATED       its final NOTIFY answered (whatever the status)
    ACTIVE, OWES_... -> TERMINATED       a NOTIFY failed (RFC 6665 §4.2.2), connection lost
    TERMINATED: out of the table, its queue messages acknowledged, its record deleted.

Work on a dialog (`Work`: a lookup, its NOTIFYs, its write) goes one piece at a time; a
refresh arriving meanwhile waits for it (`refresh_owed`). Updates from the queue and owed full
states go EDGE_NOTIFY_CONCURRENCY dialogs at a time, in the order they became ready, so a burst
neither takes every function slot from the phones' requests nor fails against the bulkhead.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from chalicelib import edge_contract as contract
from chalicelib import settings
from chalicelib.edge_contract import subscription_id, watcher_id
from sip_edge.dialog import HASH_KEY, DialogState, Peer, SubscriptionDialog, Work, WorkKind
from sip_edge.handling import Reject, raise_function_error
from sip_edge.presence import record, subscribe
from sip_edge.presence.actions import (
    Ack,
    Action,
    Delete,
    Lookup,
    Opening,
    Release,
    Reply,
    SendNotify,
    Store,
)
from sip_edge.presence.table import DialogTable
from sip_edge.sip.message import Request
from sip_edge.sip.values import Via, parse_name_addr

ACTIVE, OWES_FULL_STATE = DialogState.ACTIVE, DialogState.OWES_FULL_STATE
ENDING, TERMINATED = DialogState.ENDING, DialogState.TERMINATED


class EdgeAddress(Protocol):
    """Where the edge is: what its NOTIFYs carry (Via, Contact) and its id in the store."""

    edge_id: str

    def contact(self, transport: str) -> str: ...

    def via(self, transport: str) -> Via: ...


class PresenceCore:
    """The subscription dialogs of one edge: events in, actions out."""

    def __init__(
        self,
        cfg: settings.Settings,
        edge: EdgeAddress,
        *,
        clock: Callable[[], float],
        pacing: Callable[[], float],
        stats: dict[str, int],
    ) -> None:
        self.cfg = cfg
        self.edge = edge
        self.clock = clock  # wall clock: expiries, rechecks, Subscription-State
        self.pacing = pacing  # monotonic: NOTIFY_MIN_INTERVAL between a dialog's updates
        self.stats = stats
        self.dialogs = DialogTable()
        self._ready: dict[str, None] = {}  # dialogs waiting for an update slot, in order
        self.updating = 0  # dialogs being brought up to date (at most EDGE_NOTIFY_CONCURRENCY)
        self._resumed: dict[str, SubscriptionDialog] = {}

    @property
    def inline_limit(self) -> int:
        return self.cfg.edge_dialog_inline_entries_bytes

    # --- SUBSCRIBE -----------------------------------------------------------------------

    def live_dialog(self, request: Request) -> SubscriptionDialog | None:
        """The live dialog of ours a request is in (Call-ID and both tags match), if any."""
        dialog = self.dialogs.get(subscription_id(request.call_id, request.to.tag or ""))
        if dialog is None or not dialog.live or dialog.remote_tag != request.from_.tag:
            return None
        return dialog

    def subscribe(self, request: Request, peer: Peer, identity: str) -> Opening | Reply:
        """An authenticated SUBSCRIBE (`subscribe.check` passed): a refresh is answered at
        once; a new one needs its first lookup (Opening). Refusals raise Reject."""
        now = self.clock()
        expires = subscribe.granted_expires(request, self.cfg)
        if request.to.tag is None:
            dialog, lookup = subscribe.new_dialog(request, peer, identity, expires, now, self.cfg)
            cap = self.cfg.subscribe_max_dialogs_per_account
            if expires and self.dialogs.held_by(identity) >= cap:
                raise Reject(403, f"Too many subscriptions (at most {cap} per account)")
            return Opening(request, dialog, expires, lookup)
        found = self.dialogs.get(subscription_id(request.call_id, request.to.tag))
        if found is None or not found.live or found.remote_tag != request.from_.tag:
            raise Reject(481, "Subscription does not exist")
        if found.subscriber != identity:
            raise Reject(403, "Not the subscriber of this dialog")
        if found.is_stale_request(request.cseq.seq):
            raise Reject(500, "CSeq out of order", [("Retry-After", "1")])
        found.refresh(request.cseq.seq, expires, now)
        found.peer = peer
        response = subscribe.accepted(request, found, expires, self.edge.contact(peer.transport))
        if expires == 0:
            return Reply(response, self._end(found, "timeout"))
        if found.work is not None:  # its full state follows the work in progress
            found.refresh_owed = True
            return Reply(response, [])
        return Reply(response, self._start(found, Work(WorkKind.REFRESH)))

    def opened(
        self, opening: Opening, answer: contract.PresenceLookupAnswer | contract.ErrorAnswer
    ) -> Reply:
        """A new SUBSCRIBE's first lookup answered: the dialog is the edge's, stored before
        its first NOTIFYs go (so that a change queued meanwhile finds it) and as they will
        leave it. A fetch (Expires: 0, RFC 6665 §4.4.3) gets them, the last one final, and
        is never stored."""
        if "error" in answer:
            raise_function_error(answer)
            raise Reject(500)  # an empty refusal: the function is broken
        dialog, entries = opening.dialog, list(answer["entries"])
        dialog.keep_entries(entries, self.inline_limit)
        self.dialogs[dialog.subscription_id] = dialog
        contact = self.edge.contact(dialog.peer.transport)
        response = subscribe.accepted(opening.request, dialog, opening.expires, contact)
        bodies, syncs = self._apply(dialog, answer)
        if opening.expires == 0:
            dialog.stored, dialog.state, dialog.end_reason = False, ENDING, "timeout"
            dialog.work = Work(WorkKind.FETCH, bodies=bodies, final_reason="timeout")
            return Reply(response, self._send_next(dialog) if bodies else self._terminate(dialog))
        dialog.work = work = Work(WorkKind.NEW, bodies=bodies, syncs=syncs)
        stored = dialog.to_record()
        stored["local_cseq"] += len(bodies)  # as the NOTIFYs will leave it: one write for both
        save: contract.SubscriptionSave = {
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
        return Reply(response, [self._write(dialog, save, work)])

    # --- outcomes of actions ----------------------------------------------------------------

    def looked_up(
        self, action: Lookup, answer: contract.PresenceLookupAnswer | contract.ErrorAnswer
    ) -> list[Action]:
        dialog, work = action.dialog, action.work
        if dialog.work is not work:
            return []  # the dialog ended meanwhile
        if "error" in answer:  # a list the function no longer has, or an account disabled
            if work.full:
                return self._end(dialog, "noresource")
            return self._finish(dialog)
        if work.kind is WorkKind.UPDATE and not work.full:
            changed = [r for r in answer["resources"] if dialog.last_state(r["uri"]) != _state(r)]
            for r in answer["resources"]:  # numbers still past the budget: ask again later
                if recheck_at := r.get("recheck_at"):
                    dialog.rechecks[r["uri"]] = float(recheck_at)
            if not changed:
                return self._finish(dialog)  # a replayed or stale change: the phone knows it
            # A resource with no last state (a dialog resumed after a restart) may have been
            # a user: only full state takes it back on Linphone, so err on that side.
            removed = any(r["user"] is None and dialog.last_state(r["uri"]) != "-" for r in changed)
            policy = self.cfg.notify_full_state_on_removal
            if removed and (policy == "always" or policy == dialog.profile):
                work.full = True
                return [self._lookup(dialog, work)]
        work.bodies, work.syncs = self._apply(dialog, answer)
        if work.kind is WorkKind.REFRESH:  # stored with its NOTIFYs' CSeq and version: one write
            refreshed = self._refresh(dialog, dialog.local_cseq + len(work.bodies))
            return [self._write(dialog, refreshed, work)]
        return self._send_next(dialog) if work.bodies else self._finish(dialog)

    def lookup_failed(self, action: Lookup) -> list[Action]:
        """The lookup could not be made (the functions are down or overloaded)."""
        dialog, work = action.dialog, action.work
        if dialog.work is not work:
            return []
        if work.kind is WorkKind.REFRESH:
            # The phone has its 200: stored as it is, it gets the full state once a lookup
            # answers again (the sweeps' updates).
            dialog.state = OWES_FULL_STATE
            return [self._write(dialog, self._refresh(dialog), work)]
        dialog.dirty.update(work.uris)  # tried again at the next tick
        dialog.receipts.extend(work.receipts)
        work.receipts = []
        return self._finish(dialog)

    def stored(self, action: Store, ok: bool) -> list[Action]:
        """A write answered (`ok`) or failed: the dialog still works from memory then."""
        dialog, payload = action.dialog, action.payload
        dialog.writes -= 1
        if ok:
            dialog.synced_stored = payload["dialog"]["synced"]
        elif payload["op"] == "save" and dialog.entries is None:
            # A list kept as keys alone was stored nowhere: the edge keeps it whole, its
            # only copy.
            dialog.keep_entries(payload["entries"], None)
        actions: list[Action] = []
        if dialog.delete_owed and not dialog.writes:
            dialog.delete_owed = False
            actions.append(Delete(dialog.subscription_id))
        work = action.work
        if work is None or dialog.work is not work:
            return actions
        if work.kind is not WorkKind.UPDATE and work.bodies:
            return actions + self._send_next(dialog)  # its NOTIFYs, now that it is stored
        return actions + self._finish(dialog)

    def notified(self, action: SendNotify, status: int) -> list[Action]:
        """A NOTIFY's final status (408 on timeout, 503 on a transport error)."""
        dialog = action.dialog
        dialog.notifying = False
        if dialog.state is TERMINATED:
            return []
        if action.final or not 200 <= status < 300:
            return self._terminate(dialog)  # RFC 6665 §4.2.2: 481, a timeout, a flow failure
        work = dialog.work
        if dialog.state is ENDING or work is None or work.bodies:
            return self._send_next(dialog)
        if work.syncs:  # every entry's state went out, and the phone has it
            dialog.synced = True
            dialog.state = ACTIVE
        if work.kind is WorkKind.UPDATE:  # recorded, so that a restart resumes above it
            return [self._write(dialog, self._refresh(dialog), work)]
        return self._finish(dialog)

    # --- other events -------------------------------------------------------------------------

    def queue_messages(self, messages: Iterable[tuple[Mapping[str, Any], str]]) -> list[Action]:
        """Messages from the edge's queue with their receipts: a change (`LiveUpdate`) is
        acknowledged once it reached the phone, or at once when it has nowhere to go; a
        revocation ends its dialogs."""
        done: list[str] = []
        actions: list[Action] = []
        for message, receipt in messages:
            if message.get("kind") == "revoke":
                actions += self.revoke(message)[1]
                done.append(receipt)
                continue
            dialog = self.dialogs.get(str(message.get("subscription_id", "")))
            uris = message.get("uris")
            held = dialog.holding(uris) if dialog and dialog.live and isinstance(uris, list) else []
            if dialog is None or not held:
                done.append(receipt)  # gone, another edge's, or nothing of its list
                continue
            dialog.dirty.update(held)
            dialog.receipts.append(receipt)
        if done:
            actions.append(Ack(done))
        return actions

    def revoke(self, message: Mapping[str, Any]) -> tuple[int, list[Action]]:
        """End the dialogs a `revoke` message lists (edge_contract.Revocation), each with a
        final NOTIFY `Subscription-State: terminated;reason=...`, at once (no throttle). Only
        dialogs of the subscriber it names are touched. Answers how many end."""
        subscriber = str(message.get("subscriber") or "").lower()
        reason = message.get("reason")
        reason = reason if reason in ("rejected", "deactivated") else "rejected"
        ended, actions = 0, []
        for sub_id in message.get("subscription_ids") or []:
            dialog = self.dialogs.get(str(sub_id))
            if dialog is None or not dialog.live or dialog.subscriber.lower() != subscriber:
                continue
            actions += self._end(dialog, reason)
            ended += 1
        self.stats["revoked"] = self.stats.get("revoked", 0) + ended
        return ended, actions

    def connection_lost(self, peer: Peer) -> list[Action]:
        """Dialogs over a closed stream can no longer be notified: RFC 5626 flow failure."""
        actions: list[Action] = []
        for dialog in [d for d in self.dialogs.values() if d.peer == peer]:
            actions += self._terminate(dialog)
        return actions

    def tick(self, now: float) -> list[Action]:
        """The sweep: end expired dialogs, mark lapsed resources, and start the updates the
        NOTIFY throttle allows."""
        pacing = self.pacing()
        actions: list[Action] = []
        for dialog in list(self.dialogs.values()):
            if not dialog.live:
                continue
            if dialog.expires_at <= now:
                actions += self._end(dialog, "timeout")
                continue
            if dialog.rechecks:
                for uri, when in list(dialog.rechecks.items()):
                    if when <= now:  # a mutual contact's registration or publication lapsed
                        del dialog.rechecks[uri]
                        dialog.dirty.add(uri)
            if dialog.work is None and dialog.owes_notify and pacing >= dialog.next_notify_at:
                self._ready.setdefault(dialog.subscription_id)
        return actions + self._start_updates()

    # --- reload and stop ----------------------------------------------------------------------

    def load_request(self, cursor: str | None) -> contract.SubscriptionLoad:
        """One page of this edge's stored dialogs (lists past the inline limit as keys)."""
        load: contract.SubscriptionLoad = {
            "op": "load_edge",
            "edge_id": self.edge.edge_id,
            "inline_limit": self.inline_limit,
            "keys_key_hex": HASH_KEY.hex(),
        }
        if cursor:
            load["cursor"] = cursor
        return load

    def reloaded(self, page: contract.SubscriptionsAnswer) -> list[Action]:
        """A page of stored dialogs, kept until `reload_done`. Stream dialogs are deleted:
        their connections died with the old edge, so their next refresh gets 481 and the
        phone subscribes again at once. So are records this edge cannot read."""
        actions: list[Action] = []
        for data in page.get("subscriptions", []):
            keys = base64.b64decode(data.get("entry_keys_b64") or "")
            try:
                stored = record.read(data["dialog"])
            except (ValueError, TypeError, KeyError):
                self.stats["unreadable"] = self.stats.get("unreadable", 0) + 1
                stored = None
            if stored is None or stored["peer"]["transport"] != "udp":
                actions.append(Delete(data["subscription_id"]))
                continue
            dialog = SubscriptionDialog.from_record(
                stored, None if keys else data.get("entries", []),
                inline_limit=self.inline_limit, keys=keys,
            )  # fmt: skip
            dialog.expires_at = float(data["expires_at"])
            # Stored before its phone answered a full state: the old edge may have stopped
            # before sending it. Full state once more is harmless; none is not.
            if not dialog.synced:
                dialog.state = OWES_FULL_STATE
            self._resumed[dialog.subscription_id] = dialog
        return actions

    def reload_done(self) -> int:
        """The reload's dialogs join the table (one made meanwhile stays as it is)."""
        for sub_id, dialog in self._resumed.items():
            self.dialogs.setdefault(sub_id, dialog)
        count = len(self._resumed)
        self._resumed = {}
        self.stats["resumed"] = count
        return count

    def release(self) -> list[Action]:
        """At a stop: changes not yet notified go back to the queue for the next edge."""
        receipts: list[str] = []
        for dialog in self.dialogs.values():
            receipts += dialog.receipts
            dialog.receipts = []
            if dialog.work is not None:
                receipts += dialog.work.receipts
                dialog.work.receipts = []
        return [Release(receipts)] if receipts else []

    def synced_writes(self) -> list[Store]:
        """At a stop: write the dialogs whose phones answered a full state since their last
        write (new dialogs, mostly), so that the next edge owes them none. Stream dialogs are
        left out: their connections end with this edge, and the next drops them."""
        return [
            self._write(d, self._refresh(d))
            for d in self.dialogs.values()
            if d.synced and not d.synced_stored and d.live and not d.peer.reliable
        ]

    # --- inside ---------------------------------------------------------------------------

    def _start(self, dialog: SubscriptionDialog, work: Work) -> list[Action]:
        dialog.work = work
        if work.kind is WorkKind.UPDATE:
            self.updating += 1
        return [self._lookup(dialog, work)]

    def _start_updates(self) -> list[Action]:
        """The next ready dialogs' updates, up to EDGE_NOTIFY_CONCURRENCY at once."""
        actions: list[Action] = []
        while self._ready and self.updating < self.cfg.edge_notify_concurrency:
            sub_id = next(iter(self._ready))
            del self._ready[sub_id]
            dialog = self.dialogs.get(sub_id)
            if dialog is None or not dialog.live or dialog.work or not dialog.owes_notify:
                continue
            full = dialog.state is OWES_FULL_STATE  # the full state covers the changes too
            work = Work(WorkKind.UPDATE, full, sorted(dialog.dirty), dialog.receipts)
            dialog.dirty.clear()
            dialog.receipts = []
            actions += self._start(dialog, work)
        return actions

    def _lookup(self, dialog: SubscriptionDialog, work: Work) -> Lookup:
        """presence_lookup of the dialog's whole list (full) or its changed resources."""
        lookup: contract.PresenceLookupRequest = {
            "subscriber": dialog.subscriber,
            "profile": dialog.profile,
            "accept_encoding": ["deflate"] if dialog.accept_deflate else [],
            "version": dialog.version,
            "full_state": work.full,
            "single": not dialog.is_list,
            "list_uri": parse_name_addr(dialog.local_uri).uri.raw,
        }
        entries = dialog.entries if work.full else work.uris
        if entries is None:  # only its keys here: the function reads the stored list
            lookup["subscription_id"] = dialog.subscription_id
        else:
            lookup["entries"] = entries
        return Lookup(dialog, work, lookup)

    def _apply(
        self, dialog: SubscriptionDialog, answer: contract.PresenceLookupAnswer
    ) -> tuple[list[contract.NotifyBody], bool]:
        """What the phone will know once a lookup's NOTIFYs went out: its bodies, and whether
        they are a full state."""
        bodies = list(answer["bodies"])
        dialog.version = answer["version"]
        full = bool(bodies) and bodies[0].get("full_state", False)
        if full:
            dialog.told = True  # every entry's state goes out: missing from last_states = "-"
        for resource in answer["resources"]:
            dialog.remember(resource["uri"], _state(resource))
            if recheck_at := resource.get("recheck_at"):
                dialog.rechecks[resource["uri"]] = float(recheck_at)
            else:
                dialog.rechecks.pop(resource["uri"], None)
        dialog.next_notify_at = self.pacing() + self.cfg.notify_min_interval
        return bodies, full

    def _send_next(self, dialog: SubscriptionDialog) -> list[Action]:
        """The dialog's next NOTIFY, unless one is out: its final one if it is ending, else
        the next body of its work."""
        if dialog.notifying or dialog.state is TERMINATED:
            return []
        work = dialog.work
        if dialog.state is ENDING and (work is None or work.kind is not WorkKind.FETCH):
            return [self._notify(dialog, None, dialog.end_reason)]
        if work is None or not work.bodies:
            return []
        body = work.bodies.pop(0)
        return [self._notify(dialog, body, None if work.bodies else work.final_reason or None)]

    def _notify(
        self, dialog: SubscriptionDialog, body: contract.NotifyBody | None, reason: str | None
    ) -> SendNotify:
        transport = dialog.peer.transport
        request = dialog.notify(
            via=self.edge.via(transport),
            contact=self.edge.contact(transport),
            now=self.clock(),
            body=base64.b64decode(body["body_b64"]) if body else b"",
            content_type=body["content_type"] if body else None,
            content_encoding=body.get("content_encoding") if body else None,
            reason=reason,
        )
        if self.cfg.sip_server_header:
            request.headers.add("User-Agent", self.cfg.sip_server_header)
        dialog.notifying = True
        return SendNotify(dialog, request, final=reason is not None)

    @staticmethod
    def _refresh(
        dialog: SubscriptionDialog, local_cseq: int | None = None
    ) -> contract.SubscriptionRefresh:
        """The dialog written again (`local_cseq`: as the NOTIFYs about to go will leave it)."""
        stored = dialog.to_record()
        if local_cseq is not None:
            stored["local_cseq"] = local_cseq
        return {
            "op": "refresh",
            "subscription_id": dialog.subscription_id,
            "expires_at": int(dialog.expires_at),
            "version": stored["version"],
            "dialog": stored,
        }

    @staticmethod
    def _write(
        dialog: SubscriptionDialog,
        payload: contract.SubscriptionSave | contract.SubscriptionRefresh,
        work: Work | None = None,
    ) -> Store:
        dialog.writes += 1
        return Store(dialog, payload, work)

    def _drop_work(self, dialog: SubscriptionDialog) -> list[str]:
        """Detach the dialog's work (its update slot freed); answers its queue messages."""
        work, dialog.work = dialog.work, None
        if work is None:
            return []
        if work.kind is WorkKind.UPDATE:
            self.updating -= 1
        receipts, work.receipts = work.receipts, []
        return receipts

    def _finish(self, dialog: SubscriptionDialog) -> list[Action]:
        """The work done: its messages acknowledged, and what waited for it started."""
        receipts = self._drop_work(dialog)
        actions: list[Action] = [Ack(receipts)] if receipts else []
        if dialog.refresh_owed and dialog.live:
            dialog.refresh_owed = False
            actions += self._start(dialog, Work(WorkKind.REFRESH))
        return actions + self._start_updates()

    def _end(self, dialog: SubscriptionDialog, reason: str) -> list[Action]:
        """End a live dialog with a final NOTIFY, as soon as no other is out; the work in
        progress stops where it is."""
        if not dialog.live:
            return []
        dialog.state, dialog.end_reason = ENDING, reason
        dialog.refresh_owed = False
        dialog.receipts += self._drop_work(dialog)  # acknowledged once it is gone
        return self._send_next(dialog) + self._start_updates()

    def _terminate(self, dialog: SubscriptionDialog) -> list[Action]:
        """Forget the dialog: its messages acknowledged, its record deleted (after any write
        still out, which would bring it back)."""
        if dialog.state is TERMINATED:
            return []
        dialog.state = TERMINATED
        receipts = dialog.receipts + self._drop_work(dialog)
        dialog.receipts = []
        if self.dialogs.get(dialog.subscription_id) is dialog:
            del self.dialogs[dialog.subscription_id]
        self._ready.pop(dialog.subscription_id, None)
        actions: list[Action] = [Ack(receipts)] if receipts else []
        if dialog.stored and dialog.writes:
            dialog.delete_owed = True
        elif dialog.stored:
            actions.append(Delete(dialog.subscription_id))
        return actions + self._start_updates()


def _state(resource: contract.ResourceAnswer) -> str:
    """What the phone sees of one resource: not a user ("-"), or its contact and status."""
    return "-" if resource["user"] is None else f"{resource['user']}|{resource.get('status')}"
