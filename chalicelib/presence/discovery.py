"""Contact discovery: which numbers of an address book belong to discoverable accounts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chalicelib import settings
from chalicelib.accounts import discovery_budget, phone
from chalicelib.accounts.model import Account
from chalicelib.errors import DomainError
from chalicelib.presence import resolve as presence


@dataclass(frozen=True)
class Discovery:
    """Matches for the numbers the caller's budget paid for; the others wait (`deferred`)."""

    matches: list[dict[str, str]]
    deferred: list[str] = field(default_factory=list)  # as given, in request order
    retry_after: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"matches": self.matches, "deferred": self.deferred}


def discover(caller: Account, phones: object, *, default_region: object = None) -> Discovery:
    """Match `phones` (strings as in the address book) against the phone index.

    National numbers are read in `default_region`, else the caller's own number's region,
    else the service default. Numbers that do not parse are skipped (address books hold
    junk). Matches are [{"phone": as given, "e164", "sip_uri"}] for discoverable accounts only,
    in the order given. Each number the caller was never answered about takes a token of its
    discovery budget; those past it are deferred, not answered. Raises 413 `too_many_phones`
    beyond the limit, 400 for wrong types."""
    if not isinstance(phones, list):
        raise DomainError("invalid_field", "phones: expected a list of strings")
    limit = settings.get().discover_max_phones
    if len(phones) > limit:
        raise DomainError("too_many_phones", f"phones: at most {limit} numbers per call")
    for i, raw in enumerate(phones):
        if not isinstance(raw, str):
            raise DomainError("invalid_field", f"phones[{i}]: expected a string")
    if default_region is not None:
        region: str | None = phone.valid_region(default_region)
    else:
        region = phone.region_of(caller.phone) if caller.phone else None
    parsed = presence.parse_numbers(phones, region)
    charge = discovery_budget.charge(caller.aor, parsed.values())
    affordable = [raw for raw, e164 in parsed.items() if e164 in charge.allowed]
    deferred = [raw for raw, e164 in parsed.items() if e164 not in charge.allowed]
    matches = [m.to_json() for m in presence.resolve_numbers(affordable, region)]
    return Discovery(matches, deferred, charge.retry_after)
