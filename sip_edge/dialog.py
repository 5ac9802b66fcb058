"""Subscription dialogs (RFC 6665 §4.2, RFC 4662) as plain state: no I/O, no clock of its own.

A `SubscriptionDialog` is created from the SUBSCRIBE that opened it, answers what its refreshes
change, and builds the NOTIFY requests of the dialog (CSeq, tags, route set, Subscription-State,
the Event spelling of the subscriber's profile). It carries its `DialogState` and the `Work` in
progress; the presence core (`sip_edge.presence.core`) moves them and decides what is sent
when. Its stored part round-trips through `to_record`/`from_record` (a versioned record,
`sip_edge.presence.record`) so that an edge that restarts can resume the dialog.

A list dialog's entries are read for two things only: a full-state NOTIFY (the whole list goes
to `presence_lookup`) and checking that a queued change names URIs of the list. So the edge
keeps them in one of two compact forms (`keep_entries`):

- inline, deflated JSON (plain JSON when short), while that stays within
  EDGE_DIALOG_INLINE_ENTRIES_BYTES: Linphone's lists of phone numbers (~28 KB for 5,000)
  need no extra call for a full-state NOTIFY;
- past it, only a sorted array of 8-byte keyed hashes, one per entry (40 KB for 5,000 whatever
  the URIs' length), enough to check a change's URIs; the list itself lives only in its
  DynamoDB list item, which `presence_lookup` reads when given the subscription id instead of
  entries. The hash key is random per process, never stored, and handed only to `load_edge`,
  which answers a large list's keys made with it (a reload carries ~54 KB per such dialog, not
  the ~0.6 MB of its URIs); nobody can craft a URI that collides with a list's entry.
"""

from __future__ import annotations

import bisect
import json
import secrets
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from chalicelib.edge_contract import ENTRY_KEY_BYTES, DialogRecord, NotifyBody, entry_keys
from sip_edge.presence import record
from sip_edge.sip.headers import Headers
from sip_edge.sip.message import Request, new_tag
from sip_edge.sip.values import CSeq, Via

#: A list's JSON up to this size is kept as it is, not deflated.
PLAIN_ENTRIES_BYTES = 256
#: This process's key of entry keys: never stored, and handed to `load_edge` only, which
#: answers a large list's keys made with it (so a reload need not carry the list).
HASH_KEY = secrets.token_bytes(16)


@dataclass(frozen=True)
class Peer:
    """Where a message came from, and so where the dialog's requests go (the flow, RFC 5626)."""

    transport: str  # "udp", "tcp" or "tls"
    host: str
    port: int
    connection: int | None = None  # stream connection id; None for UDP

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"


class DialogState(Enum):
    """Where a dialog stands (the presence core moves it; see sip_edge/presence/core.py)."""

    ACTIVE = "active"  # the phone knows what the edge last told it; changes may be waiting
    OWES_FULL_STATE = "owes full state"  # the next NOTIFY must be a full state (resync)
    ENDING = "ending"  # its final NOTIFY (terminated) waits or is out: nothing else goes
    TERMINATED = "terminated"  # over and forgotten: no NOTIFY, no write but its delete


class WorkKind(Enum):
    NEW = "new"  # a new dialog: its write, then its first NOTIFYs
    FETCH = "fetch"  # Expires: 0 (RFC 6665 §4.4.3): its NOTIFYs, the last one final
    REFRESH = "refresh"  # a refresh SUBSCRIBE: a full state, written with its CSeq and version
    UPDATE = "update"  # queued changes or an owed full state, at most EDGE_NOTIFY_CONCURRENCY


@dataclass(eq=False, slots=True)
class Work:
    """One piece of work on a dialog: a lookup, the NOTIFYs it gives, the write that records
    them. Its queue messages are acknowledged once its NOTIFYs went out (or the dialog is gone);
    if its lookup fails, its resources and messages go back to the dialog for the next one."""

    kind: WorkKind
    full: bool = True  # a full state (else the changed resources of `uris`)
    uris: list[str] = field(default_factory=list)
    receipts: list[str] = field(default_factory=list)
    bodies: list[NotifyBody] = field(default_factory=list)  # left to send, in order
    final_reason: str = ""  # FETCH: the last body ends the dialog with this reason
    syncs: bool = False  # its bodies are a full state: once answered, the phone is synced


@dataclass(slots=True)
class SubscriptionDialog:
    subscription_id: str
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # To of the SUBSCRIBE (the list or resource), without tag
    remote_uri: str  # From of the SUBSCRIBE (the subscriber), without tag
    remote_target: str  # Contact URI of the subscriber
    route_set: list[str]
    subscriber: str  # authenticated account, "user@domain"
    peer: Peer
    expires_at: float
    event_id: str | None = None
    profile: str = "rfc"  # "linphone" or "rfc"
    accept_deflate: bool = False
    is_list: bool = True
    device: str = ""  # the phone: its +sip.instance, else its Contact URI (watchers index)
    user_agent: str = ""  # its User-Agent (cut to USER_AGENT_MAX): the account's devices list
    # The list's entries (see the module docstring): deflated JSON while small, else only
    # their sorted keys (the list then lives in DynamoDB alone). Never both.
    packed_entries: bytes = b""
    entry_keys: bytes = b""
    version: int = 0  # next RLMI version
    local_cseq: int = field(default_factory=lambda: secrets.randbelow(10000) + 1)
    remote_cseq: int = 0
    state: DialogState = DialogState.ACTIVE
    # Live updates: resources to look at again, when the next NOTIFY may go (throttle), and
    # what the phone was last told of each resource (to skip NOTIFYs that change nothing).
    dirty: set[str] = field(default_factory=set)
    next_notify_at: float = 0.0  # on the edge's monotonic pacing clock, never stored
    # Users only: once `told` (a full-state NOTIFY went), an entry missing here is a non-user.
    last_states: dict[str, str] = field(default_factory=dict)
    told: bool = False
    rechecks: dict[str, float] = field(default_factory=dict)  # uri -> when its status lapses
    # Stored: the phone answered a full-state NOTIFY of this dialog before its last write. A
    # new dialog is stored before its first NOTIFY goes (one write per SUBSCRIBE), so an
    # edge that stops in between leaves it False, and the edge that reloads it owes the
    # phone a full state (OWES_FULL_STATE).
    synced: bool = False
    synced_stored: bool = False  # what the last write that went through said of `synced`
    # The presence core's bookkeeping, never stored: queue messages whose change is not in a
    # NOTIFY yet; the work in progress (one at a time); whether a NOTIFY transaction is out
    # (one at a time, in CSeq order); a refresh's full state waiting for the work in
    # progress; the final NOTIFY's reason; writes still out, and the delete that waits for
    # them; and whether it is stored at all (a fetch never is).
    receipts: list[str] = field(default_factory=list)
    work: Work | None = None
    notifying: bool = False
    refresh_owed: bool = False
    end_reason: str = ""
    writes: int = 0
    delete_owed: bool = False
    stored: bool = True

    @property
    def owes_notify(self) -> bool:
        """Changes to send, or a full state owed: the sweep queues the dialog for an update."""
        return bool(self.dirty) or self.state is DialogState.OWES_FULL_STATE

    @property
    def live(self) -> bool:
        """Neither ending nor over: it takes refreshes, changes and updates."""
        return self.state is DialogState.ACTIVE or self.state is DialogState.OWES_FULL_STATE

    @property
    def entries(self) -> list[str] | None:
        """The list, when the edge holds it; None when only its keys are here (a full-state
        lookup then names the subscription, and the function reads the stored list)."""
        if self.entry_keys:
            return None
        packed = self.packed_entries
        if not packed:
            return []
        return json.loads(packed if packed[:1] == b"[" else zlib.decompress(packed))

    def keep_entries(self, entries: list[str], inline_limit: int | None) -> None:
        """Hold `entries` inline if deflated they fit `inline_limit` bytes (None: always),
        else only their keys. A short list is kept as plain JSON: deflating it gained nothing
        and was a visible part of each single-resource SUBSCRIBE (zlib sets up its window
        every time)."""
        packed = json.dumps(list(entries)).encode() if entries else b""
        if len(packed) > PLAIN_ENTRIES_BYTES:
            packed = zlib.compress(packed, 6)  # starts with 0x78, never "["
        if inline_limit is None or len(packed) <= inline_limit:
            self.packed_entries, self.entry_keys = packed, b""
        else:
            self.packed_entries = b""
            self.entry_keys = entry_keys(entries, HASH_KEY)

    def holding(self, uris: Iterable[str]) -> list[str]:
        """Those of `uris` that are entries of the list (the list unpacked once, if inline)."""
        if not self.entry_keys:
            known = set(self.entries or ())
            return [u for u in uris if u in known]
        keys, count = self.entry_keys, len(self.entry_keys) // ENTRY_KEY_BYTES

        def key_at(i: int) -> bytes:
            return keys[i * ENTRY_KEY_BYTES : (i + 1) * ENTRY_KEY_BYTES]

        found = []
        for uri in uris:
            wanted = entry_keys([uri], HASH_KEY)
            i = bisect.bisect_left(range(count), wanted, key=key_at)
            if i < count and key_at(i) == wanted:
                found.append(uri)
        return found

    def last_state(self, uri: str) -> str | None:
        """What the phone was last told of `uri` ("-": not a user), or None if unknown (a
        dialog resumed after a restart, before its first full-state NOTIFY)."""
        return self.last_states.get(uri) or ("-" if self.told else None)

    def remember(self, uri: str, state: str) -> None:
        if state == "-":
            self.last_states.pop(uri, None)
        else:
            self.last_states[uri] = state

    @property
    def event_header(self) -> str:
        # Linphone 5.1 compares "Presence" case-sensitively (see the interop README).
        package = "Presence" if self.profile == "linphone" else "presence"
        return package + (f";id={self.event_id}" if self.event_id else "")

    def expires_in(self, now: float) -> int:
        return max(0, int(round(self.expires_at - now)))

    def refresh(self, cseq: int, expires: int, now: float) -> None:
        self.remote_cseq = cseq
        self.expires_at = now + expires

    def is_stale_request(self, cseq: int) -> bool:
        """RFC 3261 §12.2.2: a lower CSeq than the last one is out of order (500)."""
        return cseq <= self.remote_cseq

    def notify(
        self,
        *,
        via: Via,
        contact: str,
        now: float,
        body: bytes = b"",
        content_type: str | None = None,
        content_encoding: str | None = None,
        reason: str | None = None,
    ) -> Request:
        """The next NOTIFY of this dialog; `reason` set means `terminated` with that reason."""
        self.local_cseq += 1
        h = Headers()
        # The edge built the Via and the CSeq: the transaction layer reads them parsed.
        h.add("Via", via.raw, parsed=[via])
        h.add("Max-Forwards", "70")
        for route in self.route_set:
            h.add("Route", route)
        h.add("From", f"{self.local_uri};tag={self.local_tag}")
        h.add("To", f"{self.remote_uri};tag={self.remote_tag}")
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{self.local_cseq} NOTIFY", parsed=CSeq(self.local_cseq, "NOTIFY"))
        h.add("Contact", contact)
        h.add("Event", self.event_header)
        if reason is None:
            h.add("Subscription-State", f"active;expires={self.expires_in(now)}")
        else:
            h.add("Subscription-State", f"terminated;reason={reason}")
        if self.is_list and body:
            h.add("Require", "eventlist")
        if body and content_type:
            h.add("Content-Type", content_type)
            if content_encoding:
                h.add("Content-Encoding", content_encoding)
        return Request("NOTIFY", self.remote_target, h, body)

    def to_record(self) -> DialogRecord:
        """The dialog as it is stored (`sip_edge.presence.record`). Field by field, not
        dataclasses.asdict: that deep-copies every field, the transient ones too, and was a
        tenth of the edge's CPU per presence cycle (bench edge-alone)."""
        peer = self.peer
        return {
            "schema": record.SCHEMA,
            "subscription_id": self.subscription_id,
            "call_id": self.call_id,
            "local_tag": self.local_tag,
            "remote_tag": self.remote_tag,
            "local_uri": self.local_uri,
            "remote_uri": self.remote_uri,
            "remote_target": self.remote_target,
            "route_set": list(self.route_set),
            "subscriber": self.subscriber,
            "peer": {"transport": peer.transport, "host": peer.host, "port": peer.port,
                     "connection": peer.connection},
            "expires_at": self.expires_at,
            "event_id": self.event_id,
            "profile": self.profile,
            "accept_deflate": self.accept_deflate,
            "is_list": self.is_list,
            "device": self.device,
            "user_agent": self.user_agent,
            "version": self.version,
            "local_cseq": self.local_cseq,
            "remote_cseq": self.remote_cseq,
            "synced": self.synced,
        }  # fmt: skip

    @classmethod
    def from_record(
        cls,
        stored: DialogRecord,
        entries: list[str] | None,
        *,
        inline_limit: int | None,
        keys: bytes = b"",
    ) -> SubscriptionDialog:
        """A dialog from its current record (`record.read` migrates older ones); `entries`,
        or (None) the list's `keys` as `load_edge` made them with HASH_KEY."""
        dialog = cls(
            subscription_id=stored["subscription_id"],
            call_id=stored["call_id"],
            local_tag=stored["local_tag"],
            remote_tag=stored["remote_tag"],
            local_uri=stored["local_uri"],
            remote_uri=stored["remote_uri"],
            remote_target=stored["remote_target"],
            route_set=list(stored["route_set"]),
            subscriber=stored["subscriber"],
            peer=Peer(**stored["peer"]),
            expires_at=float(stored["expires_at"]),
            event_id=stored["event_id"],
            profile=stored["profile"],
            accept_deflate=stored["accept_deflate"],
            is_list=stored["is_list"],
            device=stored["device"],
            user_agent=stored["user_agent"],
            version=stored["version"],
            local_cseq=stored["local_cseq"],
            remote_cseq=stored["remote_cseq"],
            synced=stored["synced"],
        )
        dialog.synced_stored = dialog.synced
        if entries is None:
            dialog.entry_keys = keys
        else:
            dialog.keep_entries(entries, inline_limit)
        return dialog


def new_local_tag() -> str:
    return new_tag()
