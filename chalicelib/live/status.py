"""What a watcher may learn about each user of its list: the mutual-contacts privacy rule.

A user's detailed status (registered = online, what it PUBLISHed: activities, notes) goes only
to watchers that the user has in its own subscribed list. Everyone else learns "is a user":
open, the SIP address and `<rpid:away/>`, the timestamp being the time of the NOTIFY.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from chalicelib import accounts, clock
from chalicelib.live import publications, registrar, subscriptions
from chalicelib.presence import pidf, watched
from chalicelib.presence.resolve import Resolved


def mutual_contacts(subscriber: str, candidates: Iterable[str]) -> set[str]:
    """The accounts among `candidates` (AORs) whose own lists watch `subscriber`."""
    wanted = {c.lower() for c in candidates}
    if not wanted:
        return set()
    keys = [watched.account_key(subscriber)]
    account = accounts.get(subscriber)
    if account is not None and account.phone:
        keys.append(watched.phone_key(account.phone))
    watching = {w["subscriber"].lower() for w in subscriptions.watchers(keys)}
    return wanted & watching


def detailed(aor: str, now: float) -> tuple[pidf.PresenceStatus, int | None]:
    """A mutual contact's status, and when it lapses unless renewed (None: it does not).

    Its publication wins; else it is online while registered. Nothing is written when a
    binding or a publication merely expires, so the watcher's edge looks again at that time.
    """
    published = publications.current(aor, now)
    bindings = registrar.bindings(aor, now)
    if published is not None:
        status = published.status
        if status.basic == "closed":
            # Linphone 5.1 apps stop tagging a contact as a user when basic is closed: keep
            # it open and show the closed state as an away activity, the note kept.
            status = pidf.PresenceStatus("open", ("away",), status.notes)
        return status, published.expires_at
    if bindings:
        return pidf.ONLINE, max(b.expires_at for b in bindings)
    return pidf.USER_DEFAULT, None


def status_function(
    subscriber: str, resolved: list[Resolved], now: float | None = None
) -> tuple[Callable[[Resolved], pidf.PresenceStatus], dict[str, str], dict[str, int]]:
    """A `status_of` for `presence.states`; per user URI, a fingerprint of what it says and,
    for mutual contacts, when to look again (their registration or publication lapses)."""
    now = clock.now() if now is None else now
    aors = {r.contact.removeprefix("sip:").lower() for r in resolved if r.contact}
    mutual = mutual_contacts(subscriber, aors)
    details = {aor: detailed(aor, now) for aor in mutual}

    def aor_of(r: Resolved) -> str:
        return (r.contact or "").removeprefix("sip:").lower()

    def status_of(r: Resolved) -> pidf.PresenceStatus:
        found = details.get(aor_of(r))
        return found[0] if found else pidf.USER_DEFAULT

    fingerprints: dict[str, str] = {}
    rechecks: dict[str, int] = {}
    for r in resolved:
        if r.contact:
            status = status_of(r)
            fingerprints[r.uri] = repr((status.basic, status.activities, status.notes))
            until = details.get(aor_of(r), (None, None))[1]
            if until is not None:
                rechecks[r.uri] = until
    return status_of, fingerprints, rechecks
