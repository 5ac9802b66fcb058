"""Contact discovery: which numbers of an address book belong to discoverable accounts."""

from __future__ import annotations

from chalicelib import settings
from chalicelib.accounts import phone
from chalicelib.accounts.model import Account
from chalicelib.errors import DomainError
from chalicelib.presence import resolve as presence


def discover(
    caller: Account, phones: object, *, default_region: object = None
) -> list[dict[str, str]]:
    """Match `phones` (strings as in the address book) against the phone index.

    National numbers are read in `default_region`, else the caller's own number's region,
    else the service default. Numbers that do not parse are skipped (address books hold
    junk). Answers [{"phone": as given, "e164", "sip_uri"}] for discoverable accounts only,
    in the order given. Raises 413 `too_many_phones` beyond the limit, 400 for wrong types."""
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
    return [m.to_json() for m in presence.resolve_numbers(phones, region)]
