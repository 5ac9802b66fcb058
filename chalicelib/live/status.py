"""What a watcher may learn about each user of its list: the mutual-contacts privacy rule.

A user's detailed status (registered = online, what it PUBLISHed: activities, notes) goes only
to watchers that the user has in its own subscribed list. Everyone else learns "is a user":
open, the SIP address and `<rpid:away/>`, the timestamp being the time of the NOTIFY.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chalicelib import accounts, clock
from chalicelib.live import publications, registrar, subscriptions
from chalicelib.presence import pidf, watched
from chalicelib.presence.resolve import Resolved

_UNREAD: Any = object()  # the caller has not read the subscriber's account


def mutual_contacts(
    subscriber: str, candidates: Iterable[str], account: accounts.Account | None = _UNREAD
) -> set[str]:
    """The accounts among `candidates` (AORs) whose own lists watch `subscriber`; `account`
    is the subscriber's, when the caller has read it already (None: it has none)."""
    wanted = {c.lower() for c in candidates}
    if not wanted:
        return set()
    keys = [watched.account_key(subscriber)]
    if account is _UNREAD:
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


def contact_aor(r: Resolved) -> str:
    """The AOR of a resolved user's SIP URI ("" for an entry that is not a user)."""
    return (r.contact or "").removeprefix("sip:").lower()


@dataclass(frozen=True)
class Statuses:
    """What one watcher may learn about the users of its list.

    `detailed` holds, per AOR, the status of each mutual contact and when it lapses (None: it
    does not); everyone else is `USER_DEFAULT`. Per entry URI of a user, `fingerprints` says
    what its status shows, and `rechecks` when to look again (a registration or publication
    lapses)."""

    detailed: dict[str, tuple[pidf.PresenceStatus, int | None]]
    fingerprints: dict[str, str]
    rechecks: dict[str, int]

    def status_of(self, r: Resolved) -> pidf.PresenceStatus:
        """A `status_of` for `presence.states`."""
        found = self.detailed.get(contact_aor(r))
        return found[0] if found else pidf.USER_DEFAULT


def statuses_for(
    subscriber: str,
    resolved: list[Resolved],
    now: float | None = None,
    account: accounts.Account | None = _UNREAD,
) -> Statuses:
    """The statuses `subscriber` may see of the users among `resolved` (`account`: see
    `mutual_contacts`)."""
    now = clock.now() if now is None else now
    aors = {contact_aor(r) for r in resolved if r.contact}
    details = {aor: detailed(aor, now) for aor in mutual_contacts(subscriber, aors, account)}
    view = Statuses(details, {}, {})
    for r in resolved:
        if r.contact:
            status = view.status_of(r)
            view.fingerprints[r.uri] = repr((status.basic, status.activities, status.notes))
            until = details.get(contact_aor(r), (None, None))[1]
            if until is not None:
                view.rechecks[r.uri] = until
    return view
