"""Subscription dialogs (RFC 6665 §4.2, RFC 4662) as plain state: no I/O, no clock of its own.

A `SubscriptionDialog` is created from the SUBSCRIBE that opened it, answers what its refreshes
change, and builds the NOTIFY requests of the dialog (CSeq, tags, route set, Subscription-State,
the Event spelling of the subscriber's profile). The edge decides when to send them. Its state
round-trips through `to_json`/`from_json` so an edge that restarts can resume the dialog.
"""

from __future__ import annotations

import json
import secrets
import zlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from sip_edge.sip.headers import Headers
from sip_edge.sip.message import Request, new_tag


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


@dataclass
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
    # The list's entries, deflated JSON: a 5,000-entry list costs the edge tens of KB, not
    # the ~0.5 MB its strings would (they are read only to look the list up again).
    packed_entries: bytes = b""
    version: int = 0  # next RLMI version
    local_cseq: int = field(default_factory=lambda: secrets.randbelow(10000) + 1)
    remote_cseq: int = 0
    terminated: bool = False
    # Live updates: resources to look at again, when the next NOTIFY may go (throttle), and
    # what the phone was last told of each resource (to skip NOTIFYs that change nothing).
    dirty: set[str] = field(default_factory=set)
    next_notify_at: float = 0.0  # on the edge's monotonic pacing clock, never stored
    # Users only: once `told` (a full-state NOTIFY went), an entry missing here is a non-user.
    last_states: dict[str, str] = field(default_factory=dict)
    told: bool = False
    rechecks: dict[str, float] = field(default_factory=dict)  # uri -> when its status lapses

    @property
    def entries(self) -> list[str]:
        return json.loads(zlib.decompress(self.packed_entries)) if self.packed_entries else []

    @entries.setter
    def entries(self, value: list[str]) -> None:
        self.packed_entries = zlib.compress(json.dumps(list(value)).encode(), 6) if value else b""

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
        via: str,
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
        h.add("Via", via)
        h.add("Max-Forwards", "70")
        for route in self.route_set:
            h.add("Route", route)
        h.add("From", f"{self.local_uri};tag={self.local_tag}")
        h.add("To", f"{self.remote_uri};tag={self.remote_tag}")
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{self.local_cseq} NOTIFY")
        h.add("Contact", contact)
        h.add("Event", self.event_header)
        if reason is None and not self.terminated:
            h.add("Subscription-State", f"active;expires={self.expires_in(now)}")
        else:
            self.terminated = True
            h.add("Subscription-State", f"terminated;reason={reason or 'noresource'}")
        if self.is_list and body:
            h.add("Require", "eventlist")
        if body and content_type:
            h.add("Content-Type", content_type)
            if content_encoding:
                h.add("Content-Encoding", content_encoding)
        return Request("NOTIFY", self.remote_target, h, body)

    def to_json(self) -> dict[str, Any]:
        # Field by field, not dataclasses.asdict: that deep-copies every field, the transient
        # ones too, and was a tenth of the edge's CPU per presence cycle (bench edge-alone).
        data = {name: getattr(self, name) for name in _STORED}
        data["route_set"] = list(self.route_set)
        data["peer"] = asdict(self.peer)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], entries: list[str]) -> SubscriptionDialog:
        data = dict(data)
        data["peer"] = Peer(**data["peer"])
        data.pop("entries", None)  # dialogs stored before the entries moved out of the dict
        dialog = cls(**data)
        dialog.entries = entries
        return dialog


#: What `to_json` keeps: entries are stored beside the dialog, compressed; the rest is
#: this edge's own bookkeeping.
_TRANSIENT = ("packed_entries", "dirty", "next_notify_at", "last_states", "told", "rechecks")
_STORED = tuple(f.name for f in fields(SubscriptionDialog) if f.name not in _TRANSIENT)


def new_local_tag() -> str:
    return new_tag()
