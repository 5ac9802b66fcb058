"""An account's devices: the phones and apps signed in to it over SIP, and signing one out.

A device is what a phone names itself with: its `+sip.instance` (RFC 5626; Linphone sends
`<urn:uuid:...>`), else its Contact URI. It is online through its REGISTER bindings and
watches the account's contacts through its list subscriptions; both carry the User-Agent it
sent. The FlexiAPI routes (`accounts/me/devices`) and the web pages list and sign out devices
through this module; nobody else's devices are ever reachable from here (every call names the
account, already proven by its caller).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Final

from chalicelib import clock
from chalicelib.live import registrar, subscriptions, updates
from chalicelib.observability import logger, pseudonym

#: The final NOTIFY reason a signed-out device's list subscriptions end with (RFC 6665 §4.2.2:
#: do not subscribe again at once).
SIGNED_OUT_REASON: Final = "rejected"


def device_id(key: str) -> str:
    """The id a device is listed and signed out by: its instance without quotes or angle
    brackets (`urn:uuid:...`, as FlexiAPI and the Linphone apps show it), else a digest of its
    Contact URI (which holds its address: not shown)."""
    bare = key.strip().strip('"').strip()
    if bare.startswith("<") and bare.endswith(">"):
        bare = bare[1:-1].strip()
    if re.fullmatch(r"urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}:[\x21-\x7e]{1,200}", bare):
        return bare
    return "contact-" + hashlib.sha256(key.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Device:
    """One device of an account, as its owner sees it."""

    uuid: str
    user_agent: str
    update_time: int  # epoch seconds: its latest REGISTER or list SUBSCRIBE
    registered: bool  # a live REGISTER binding
    subscriptions: int  # live list subscriptions

    @property
    def name(self) -> str:
        """The device's name as the Linphone apps show it: the User-Agent's text between its
        first parentheses (`LinphoneAndroid/6.0.1 (Pixel 8) LinphoneSDK/5.4` -> `Pixel 8`),
        else the whole User-Agent."""
        found = re.search(r"\(([^()]*)\)", self.user_agent)
        return (found.group(1) if found else self.user_agent).strip()

    def to_json(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "update_time": clock.iso(self.update_time),
            "user_agent": self.user_agent,
            "name": self.name,
            "registered": self.registered,
            "subscriptions": self.subscriptions,
        }


@dataclass
class _Seen:
    user_agent: str = ""
    update_time: int = 0
    registered: bool = False
    subscriptions: int = 0

    def saw(self, user_agent: str, when: int) -> None:
        if when >= self.update_time:
            self.update_time = when
            self.user_agent = user_agent or self.user_agent
        elif not self.user_agent:
            self.user_agent = user_agent


def of_account(aor: str, now: float | None = None) -> list[Device]:
    """The account's live devices, most recently seen first. Two reads: its bindings (one
    Query) and its subscriptions (the by_subscriber index, then their items)."""
    now = clock.now() if now is None else now
    seen: dict[str, _Seen] = {}
    for key, binding in registrar.stored_bindings(aor, now).items():
        entry = seen.setdefault(device_id(key), _Seen())
        entry.registered = True
        entry.saw(binding.user_agent, binding.written_ms // 1000)
    for sub in subscriptions.of_subscriber(aor, now=now, details=True):
        if not sub["device"]:
            continue
        entry = seen.setdefault(device_id(sub["device"]), _Seen())
        entry.subscriptions += 1
        entry.saw(sub["user_agent"], sub["updated_at"])
    devices = [
        Device(uuid, s.user_agent, s.update_time, s.registered, s.subscriptions)
        for uuid, s in seen.items()
    ]
    return sorted(devices, key=lambda d: (-d.update_time, d.uuid))


def sign_out(aor: str, uuid: str) -> bool:
    """End what device `uuid` of the account has signed in: its REGISTER bindings are deleted
    (its contacts see it go offline) and its list subscriptions end with a final NOTIFY. The
    device keeps its credentials: it may sign in again (a password change ends that too).
    Answers whether the account had such a device."""
    bindings = [k for k in registrar.stored_bindings(aor) if device_id(k) == uuid]
    dialogs = [
        sub
        for sub in subscriptions.of_subscriber(aor, details=True)
        if sub["device"] and device_id(sub["device"]) == uuid
    ]
    removed = registrar.remove_device(aor, bindings) if bindings else 0
    _, ended, refused = updates.end_dialogs(aor, SIGNED_OUT_REASON, dialogs)
    logger.info(
        "device signed out",
        extra={
            "aor": pseudonym(aor),
            "bindings": removed,
            "subscriptions": ended,
            "refused": refused,
        },
    )
    return bool(bindings or dialogs)
