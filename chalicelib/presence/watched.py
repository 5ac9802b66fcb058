"""The watchers index's keys: which account or number each entry of a list watches.

A list entry is watched by the phone hash of the number it names, or by the AOR of the account
it names, so that a sign-up or a newly linked number finds every list that mentions it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chalicelib.accounts import phone
from chalicelib.presence.resolve import Kind, classify_all


def phone_key(e164: str) -> str:
    return "p#" + phone.phone_hash(e164)


def account_key(aor: str) -> str:
    return "u#" + aor.lower()


@dataclass(frozen=True)
class Watched:
    """One resource of a list as the watchers index sees it."""

    uri: str  # the subscriber's own string, byte for byte
    key: str  # p#<hash> or u#<aor>


def watched_keys(
    entries: Sequence[str], subscriber: str, region: str | None = None
) -> list[Watched]:
    """Watchers-index keys of a list's entries: numbers by phone hash, accounts by AOR."""
    targets, _ = classify_all(entries, subscriber=subscriber, region=region)
    out: list[Watched] = []
    for uri, target in zip(entries, targets, strict=True):
        if target.kind is Kind.PHONE:
            out.append(Watched(uri, phone_key(target.key)))
        elif target.kind is Kind.ACCOUNT:
            out.append(Watched(uri, account_key(target.key)))
    return out
