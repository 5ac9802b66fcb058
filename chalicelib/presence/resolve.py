"""Which entries of a subscriber's list are users: URI classification and DynamoDB lookups.

An entry is a phone number (`sip:...;user=phone`, `tel:`, or a user part that is a number,
normalised to E.164 with `phonenumbers`: national numbers in the subscriber's own number's
region, else the configured default), an account (a SIP URI in one of our domains), or nothing
we know. Numbers resolve through the phone index, accounts through the Accounts table; only
discoverable, enabled accounts are users. The REST discovery and the NOTIFY builder share this.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

import phonenumbers

from chalicelib import dynamo, settings, tables
from chalicelib.accounts import phone, phone_index
from chalicelib.presence.notify import ResourceState, User
from chalicelib.presence.pidf import USER_DEFAULT, PresenceStatus

# A dialable number with RFC 3966 visual separators; "*" and "#" codes are not phone numbers.
_NUMBER = re.compile(r"^\+?[0-9][0-9().-]*$")
_SIP_SCHEMES = frozenset({"sip", "sips", "pres", "im"})
# What we ask of an account: not its HA1s.
_ACCOUNT_PROJECTION = "aor, discoverable, disabled, pending_until"


class Kind(StrEnum):
    PHONE = "phone"
    ACCOUNT = "account"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Target:
    """What an entry names: an E.164 number, an account AOR ("user@domain"), or nothing."""

    kind: Kind
    key: str = ""


NOTHING = Target(Kind.OTHER)


@dataclass(frozen=True, slots=True)
class Resolved:
    """One list entry with what it names and, when it is a user, the account's SIP URI."""

    uri: str  # the subscriber's string
    target: Target
    contact: str | None = None

    @property
    def is_user(self) -> bool:
        return self.contact is not None


@dataclass(frozen=True, slots=True)
class NumberMatch:
    """A number of an address book that reaches a discoverable account."""

    phone: str  # as given
    e164: str
    sip_uri: str

    def to_json(self) -> dict[str, str]:
        return {"phone": self.phone, "e164": self.e164, "sip_uri": self.sip_uri}


# --- Classification ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Number:
    digits: str  # the number as written, visual separators included
    region: str | None  # from a phone-context, when it names a country code

    @property
    def needs_region(self) -> bool:
        return self.region is None and not self.digits.startswith(("+", "00"))


def _context_region(params: Iterable[str]) -> str | None:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() != "phone-context":
            continue
        digits = re.sub(r"[^0-9]", "", value)
        if value.strip().startswith("+") and digits:
            for n in (1, 2, 3):
                regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(digits[:n]))
                if regions:
                    return regions[0]
    return None


def _parse(uri: str, domains: frozenset[str]) -> _Number | Target:
    """The number an entry names (region still to be chosen), or its final target."""
    text = uri.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    scheme, sep, rest = text.partition(":")
    scheme = scheme.lower()
    if not sep:
        return NOTHING
    if scheme == "tel":
        number, *params = rest.split(";")
        return _Number(number, _context_region(params)) if _NUMBER.match(number) else NOTHING
    if scheme not in _SIP_SCHEMES:
        return NOTHING
    userinfo, at, hostpart = rest.partition("@")
    if not at or not userinfo:
        return NOTHING
    user_full = unquote(userinfo.split(":", 1)[0])  # drop a password
    user, *user_params = user_full.split(";")
    host_and_params = re.split(r"[?]", hostpart, maxsplit=1)[0]
    host, *uri_params = host_and_params.split(";")
    host = host.lower()
    host = host[: host.index("]") + 1] if host.startswith("[") and "]" in host else host
    host = host.rsplit(":", 1)[0] if not host.startswith("[") else host
    host = host.rstrip(".")
    user_is_phone = any(p.strip().lower() == "user=phone" for p in uri_params)
    if user_is_phone or _NUMBER.match(user):
        if not _NUMBER.match(user):
            return NOTHING
        return _Number(user, _context_region(user_params))
    if host in domains and user:
        return Target(Kind.ACCOUNT, f"{user.lower()}@{host}")
    return NOTHING


@lru_cache(maxsize=65536)
def _e164(digits: str, region: str | None) -> str | None:
    # phonenumbers costs tens of µs per number; lists come back every refresh.
    return phone.try_parse(digits, region)


def subscriber_region(subscriber: str, counter: dynamo.CallCounter | None = None) -> str:
    """The region of the subscriber's own number, else the configured default region."""
    aor = parse_aor(subscriber)
    if aor:
        items = dynamo.batch_get(tables.ACCOUNTS, [aor], counter=counter, projection="aor, phone")
        number = items.get(aor, {}).get("phone")
        region = phone.region_of(number) if number else None
        if region and region != "ZZ":
            return region
    return settings.get().default_region.upper()


def parse_aor(subscriber: str) -> str | None:
    """ "sip:alice@example.org", "<sip:alice@example.org>" or "alice@example.org" -> AOR."""
    text = subscriber.strip().strip("<>")
    if ":" in text.split("@", 1)[0]:
        text = text.split(":", 1)[1]
    user, at, host = text.partition("@")
    host = re.split(r"[;:?>]", host, maxsplit=1)[0].lower()
    return f"{unquote(user).lower()}@{host}" if at and user and host else None


def names_numbers(entries: Sequence[str]) -> bool:
    """Whether some entry may name a phone number (read without any lookup)."""
    domains = settings.get().domains
    return any(isinstance(_parse(uri, domains), _Number) for uri in entries)


def classify_all(
    entries: Sequence[str],
    *,
    subscriber: str | None = None,
    region: str | None = None,
    counter: dynamo.CallCounter | None = None,
) -> tuple[list[Target], str]:
    """Targets of `entries` and the region used for national numbers.

    The subscriber's account is read only when some entry is a national number and no
    `region` is given (Linphone sends numbers in E.164 once the account has a prefix).
    """
    domains = settings.get().domains
    parsed = [_parse(uri, domains) for uri in entries]
    if region is None:
        needs = any(isinstance(p, _Number) and p.needs_region for p in parsed)
        if needs and subscriber:
            region = subscriber_region(subscriber, counter)
        else:
            region = settings.get().default_region.upper()
    targets: list[Target] = []
    for p in parsed:
        if isinstance(p, Target):
            targets.append(p)
            continue
        e164 = _e164(p.digits, p.region or region)
        targets.append(Target(Kind.PHONE, e164) if e164 else NOTHING)
    return targets, region


# --- Lookups -------------------------------------------------------------------------------


def _users_of(items: dict[str, dict[str, Any]]) -> dict[str, str]:
    """{aor: SIP URI} of the existing, enabled, discoverable accounts among fetched items (a
    pending account, no number proven yet, is no user)."""
    return {
        aor: "sip:" + aor
        for aor, item in items.items()
        if item.get("discoverable", True)
        and not item.get("disabled", False)
        and not item.get("pending_until")
    }


def find_users(
    targets: Iterable[Target], counter: dynamo.CallCounter | None = None
) -> dict[Target, str]:
    """{target: the account's SIP URI} for the targets that are users.

    Numbers go through the phone index and accounts through the Accounts table, in the same
    concurrent 100-key BatchGetItem chunks (one call may span both tables), so a list of
    1,000 entries costs at most 10 calls whatever its mix.
    """
    counter = counter if counter is not None else dynamo.CallCounter()
    targets = list(targets)
    by_hash = phone_index.keys({t.key for t in targets if t.kind is Kind.PHONE})
    aors = sorted({t.key for t in targets if t.kind is Kind.ACCOUNT})
    fetched = dynamo.batch_get_many(
        {tables.PHONE_INDEX: by_hash, tables.ACCOUNTS: aors},
        counter=counter,
        projections={tables.ACCOUNTS: _ACCOUNT_PROJECTION},
    )
    found: dict[Target, str] = {
        Target(Kind.PHONE, n): e.sip_uri
        for n, e in phone_index.entries(by_hash, fetched[tables.PHONE_INDEX]).items()
    }
    for aor, uri in _users_of(fetched[tables.ACCOUNTS]).items():
        found[Target(Kind.ACCOUNT, aor)] = uri
    return found


def resolve(
    entries: Sequence[str],
    *,
    subscriber: str | None = None,
    region: str | None = None,
    counter: dynamo.CallCounter | None = None,
) -> tuple[list[Resolved], str]:
    """Each entry with its target and, for users, the account's SIP URI; and the region used."""
    counter = counter if counter is not None else dynamo.CallCounter()
    targets, used_region = classify_all(
        entries, subscriber=subscriber, region=region, counter=counter
    )
    users = find_users(targets, counter)
    resolved = [Resolved(uri, t, users.get(t)) for uri, t in zip(entries, targets, strict=True)]
    return resolved, used_region


def states(
    resolved: Iterable[Resolved],
    status_of: Callable[[Resolved], PresenceStatus] | None = None,
) -> list[ResourceState]:
    """NOTIFY resource states; `status_of` gives a user's live status (default: "is a user")."""
    out: list[ResourceState] = []
    for r in resolved:
        if r.contact is None:
            out.append(ResourceState(r.uri))
        else:
            status = status_of(r) if status_of else USER_DEFAULT
            out.append(ResourceState(r.uri, User(r.contact, status)))
    return out


def parse_numbers(raw_numbers: Iterable[str], default_region: str | None = None) -> dict[str, str]:
    """{number as written: E.164} for the distinct strings that parse, in the order given."""
    region = (default_region or settings.get().default_region).upper()
    given: dict[str, str] = {}
    for raw in dict.fromkeys(raw_numbers):
        e164 = _e164(raw, region) if isinstance(raw, str) else None
        if e164:
            given[raw] = e164
    return given


def resolve_numbers(
    raw_numbers: Iterable[str],
    default_region: str | None = None,
    *,
    counter: dynamo.CallCounter | None = None,
) -> list[NumberMatch]:
    """Numbers as written in an address book -> matches for discoverable accounts, in order.

    Unparsable numbers are skipped; one match per distinct string given.
    """
    given = parse_numbers(raw_numbers, default_region)
    found = phone_index.find(set(given.values()), counter=counter)
    return [
        NumberMatch(raw, e164, found[e164].sip_uri) for raw, e164 in given.items() if e164 in found
    ]
