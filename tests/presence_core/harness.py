"""The presence core on its own: settings, a hand-moved clock, an edge address, SUBSCRIBE
requests and function answers, and a driver that only records the actions the core answers
(each test hands back the outcomes it wants, in the order it wants)."""

from __future__ import annotations

import base64
import dataclasses
import itertools
from typing import Any

from chalicelib import edge_contract as contract
from chalicelib import settings
from sip_edge.dialog import Peer, SubscriptionDialog
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
from sip_edge.presence.core import PresenceCore
from sip_edge.sip.message import Request
from sip_edge.sip.parser import parse_datagram
from sip_edge.sip.transaction import new_branch
from sip_edge.sip.values import Via

DOMAIN = "example.org"
ALICE = f"alice@{DOMAIN}"
PHONE = Peer("udp", "192.0.2.10", 5062)
BOB = f"sip:+33612345678@{DOMAIN};user=phone"
DAN = f"sip:+33699999999@{DOMAIN};user=phone"
CAROL = f"sip:carol@{DOMAIN}"
ENTRIES = [BOB, DAN, CAROL]
_calls = itertools.count(1)


def cfg(**overrides: Any) -> settings.Settings:
    base = {"notify_min_interval": 0.0, "edge_notify_concurrency": 4, "sip_server_header": ""}
    return dataclasses.replace(settings.load({}), **{**base, **overrides})


class Clock:
    """The wall clock (expiries, rechecks) and the monotonic pacing clock, moved by hand."""

    def __init__(self) -> None:
        self.wall = 1_800_000_000.0
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


class Address:
    edge_id = "edge-1"

    def contact(self, transport: str) -> str:
        return "<sip:192.0.2.1:5060>"

    def via(self, transport: str) -> Via:
        branch = new_branch()
        raw = f"SIP/2.0/{transport.upper()} 192.0.2.1:5060;branch={branch}"
        return Via("SIP/2.0", transport.upper(), "192.0.2.1", 5060, {"branch": branch}, raw)


def make_core(clock: Clock | None = None, **overrides: Any) -> PresenceCore:
    clock = clock or Clock()
    return PresenceCore(
        cfg(**overrides), Address(), clock=lambda: clock.wall, pacing=lambda: clock.mono, stats={}
    )


def subscribe_request(
    *, call_id: str | None = None, from_tag: str = "ft", to_tag: str | None = None,
    cseq: int = 1, expires: int | None = 600, entries: list[str] | None = None,
    user: str = "alice", agent: str = "LinphoneAndroid/4.6",
) -> Request:  # fmt: skip
    """A list SUBSCRIBE (a single-resource one when `entries` is None and ...)."""
    body = b""
    headers = [
        f"Via: SIP/2.0/UDP {PHONE.host}:{PHONE.port};branch={new_branch()}",
        f"From: <sip:{user}@{DOMAIN}>;tag={from_tag}",
        f"To: <sip:rls@{DOMAIN}>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id or f'call-{next(_calls)}'}",
        f"CSeq: {cseq} SUBSCRIBE",
        f'Contact: <sip:{user}@{PHONE.host}:{PHONE.port}>;+sip.instance="<urn:uuid:1>"',
        "Event: presence",
        "Accept-Encoding: deflate",
        f"User-Agent: {agent}",
    ]
    if expires is not None:
        headers.append(f"Expires: {expires}")
    if entries is not None and to_tag is None:
        body = (
            '<?xml version="1.0"?><resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">'
            "<list>" + "".join(f'<entry uri="{e}"/>' for e in entries) + "</list></resource-lists>"
        ).encode()
        headers += ["Content-Type: application/resource-lists+xml",
                    "Require: recipient-list-subscribe", "Supported: eventlist"]  # fmt: skip
    raw = f"SUBSCRIBE sip:rls@{DOMAIN} SIP/2.0\r\n" + "\r\n".join(headers)
    raw += f"\r\nContent-Length: {len(body)}\r\n\r\n"
    message = parse_datagram(raw.encode() + body)
    assert isinstance(message, Request)
    return message


def resource(uri: str, user: str | None, status: str = "away") -> contract.ResourceAnswer:
    kind = "phone" if "user=phone" in uri else "account"
    return {"uri": uri, "kind": kind, "user": user, "status": status if user else None,
            "recheck_at": None}  # fmt: skip


def answer(
    resources: list[contract.ResourceAnswer], *, version: int = 0, full: bool = True,
    parts: int = 1,
) -> contract.PresenceLookupAnswer:  # fmt: skip
    """A lookup's answer: `parts` NOTIFY bodies from `version` on."""
    bodies: list[contract.NotifyBody] = [
        {"body_b64": base64.b64encode(f"body {version + i}".encode()).decode(),
         "content_type": "multipart/related", "content_encoding": None, "version": version + i,
         "bytes": 6, "full_state": full and i == 0}
        for i in range(parts)
    ]  # fmt: skip
    return {"bodies": bodies, "version": version + parts, "entries": [r["uri"] for r in resources],
            "resources": resources, "region": "FR", "stats": {}}  # fmt: skip


def users(*known: str) -> list[contract.ResourceAnswer]:
    """ENTRIES, those named in `known` users."""
    return [resource(u, f"sip:{u.split(':')[1].split('@')[0]}@{DOMAIN}" if u in known else None)
            for u in ENTRIES]  # fmt: skip


REFUSED: contract.ErrorAnswer = {"error": {"code": "not_found", "message": "gone"}}


def of(kind: type, actions: list[Action]) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


def only(kind: type, actions: list[Action]) -> Any:
    found = of(kind, actions)
    assert len(found) == 1, actions
    return found[0]


def acked(actions: list[Action]) -> list[str]:
    return [r for a in of(Ack, actions) for r in a.receipts]


def state_of(request: Request) -> str:
    return request.headers.get("Subscription-State") or ""


def open_dialog(
    core: PresenceCore, *, entries: list[str] | None = None, known: tuple[str, ...] = (BOB,),
    expires: int = 600, **kw: Any,
) -> tuple[SubscriptionDialog, Reply]:  # fmt: skip
    """A new list SUBSCRIBE answered, its write and first NOTIFY not yet done."""
    request = subscribe_request(entries=entries or ENTRIES, expires=expires, **kw)
    opening = core.subscribe(request, PHONE, ALICE)
    assert isinstance(opening, Opening)
    reply = core.opened(opening, answer(users(*known)))
    return opening.dialog, reply


def settle(core: PresenceCore, actions: list[Action], status: int = 200) -> list[Action]:
    """Hand back every outcome a success (until nothing follows); answers every action seen.
    Lookups answer ENTRIES with bob a user."""
    seen: list[Action] = []
    pending = list(actions)
    while pending:
        action = pending.pop(0)
        seen.append(action)
        if isinstance(action, SendNotify):
            pending += core.notified(action, status)
        elif isinstance(action, Store):
            pending += core.stored(action, True)
        elif isinstance(action, Lookup):
            version = action.dialog.version
            pending += core.looked_up(action, answer(users(BOB), version=version))
        elif not isinstance(action, Ack | Delete | Release):
            raise AssertionError(action)
    return seen


def active_dialog(core: PresenceCore, **kw: Any) -> SubscriptionDialog:
    """A new dialog written, its first NOTIFY answered: synced."""
    dialog, reply = open_dialog(core, **kw)
    settle(core, reply.then)
    assert dialog.synced
    return dialog
