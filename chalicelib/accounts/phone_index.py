"""PhoneIndex: which account a phone number reaches, keyed by HMAC-SHA256 of its E.164 form.

Items: {phone_hash, aor, discoverable, updated_at}. `discoverable` is copied from the account
so that a lookup needs the index alone (one BatchGetItem per 100 numbers).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chalicelib import dynamo, tables
from chalicelib.accounts import phone


@dataclass(frozen=True)
class IndexEntry:
    e164: str
    aor: str  # "username@domain"
    discoverable: bool

    @property
    def sip_uri(self) -> str:
        return "sip:" + self.aor


def keys(e164_numbers: Iterable[str]) -> dict[str, str]:
    """{PhoneIndex key: E.164} for a batch of numbers."""
    return {phone.phone_hash(n): n for n in e164_numbers}


def entries(
    by_hash: dict[str, str], items: dict[str, dict[str, Any]], *, only_discoverable: bool = True
) -> dict[str, IndexEntry]:
    """The entries that fetched PhoneIndex `items` (keyed by hash) give, by E.164 number."""
    found: dict[str, IndexEntry] = {}
    for key, item in items.items():
        entry = IndexEntry(by_hash[key], item["aor"], bool(item.get("discoverable", True)))
        if entry.discoverable or not only_discoverable:
            found[entry.e164] = entry
    return found


def find(
    e164_numbers: Iterable[str],
    *,
    counter: dynamo.CallCounter | None = None,
    only_discoverable: bool = True,
) -> dict[str, IndexEntry]:
    """Map each E.164 number that reaches an account to its entry."""
    by_hash = keys(e164_numbers)
    items = dynamo.batch_get(tables.PHONE_INDEX, by_hash, counter=counter)
    return entries(by_hash, items, only_discoverable=only_discoverable)
