"""What a watcher may learn about each user of its list: the mutual-contacts privacy rule.

A user's detailed status (registered = online, what it PUBLISHed: activities, notes) goes only
to watchers that the user has in its own subscribed list. Everyone else learns "is a user":
open, the SIP address and `<rpid:away/>`, the timestamp being the time of the NOTIFY.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from chalicelib import accounts, pidf, publications, registrar, subscriptions
from chalicelib.presence import Resolved


def mutual_contacts(subscriber: str, candidates: Iterable[str]) -> set[str]:
    """The accounts among `candidates` (AORs) whose own lists watch `subscriber`."""
    wanted = {c.lower() for c in candidates}
    if not wanted:
        return set()
    keys = [subscriptions.account_key(subscriber)]
    account = accounts.get(subscriber)
    if account is not None and account.phone:
        keys.append(subscriptions.phone_key(account.phone))
    watching = {w["subscriber"].lower() for w in subscriptions.watchers(keys)}
    return wanted & watching


def detailed(aor: str, now: float) -> pidf.PresenceStatus:
    """A mutual contact's status: its publication, else online while registered."""
    published = publications.current(aor, now)
    online = registrar.is_online(aor, now)
    if published is not None:
        status = published.status
        if status.basic == "closed":
            # Linphone 5.1 apps stop tagging a contact as a user when basic is closed: keep
            # it open and show the closed state as an away activity, the note kept.
            return pidf.PresenceStatus("open", ("away",), status.notes)
        return status
    return pidf.ONLINE if online else pidf.USER_DEFAULT


def status_function(
    subscriber: str, resolved: list[Resolved], now: float | None = None
) -> tuple[Callable[[Resolved], pidf.PresenceStatus], dict[str, str]]:
    """A `status_of` for `presence.states`, and a fingerprint per user URI of what it says."""
    now = time.time() if now is None else now
    aors = {r.contact.removeprefix("sip:").lower() for r in resolved if r.contact}
    mutual = mutual_contacts(subscriber, aors)
    statuses = {aor: detailed(aor, now) for aor in mutual}

    def status_of(r: Resolved) -> pidf.PresenceStatus:
        aor = (r.contact or "").removeprefix("sip:").lower()
        return statuses.get(aor, pidf.USER_DEFAULT)

    fingerprints = {
        r.uri: repr((status_of(r).basic, status_of(r).activities, status_of(r).notes))
        for r in resolved
        if r.contact
    }
    return status_of, fingerprints
