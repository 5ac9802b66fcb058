"""An account as the domain knows it: username, domain, HA1s, linked number, status; validation.

Storage-agnostic: `chalicelib.accounts.store` maps it to and from DynamoDB items.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from chalicelib import clock, settings
from chalicelib.errors import DomainError

#: Usernames chosen at sign-up: 3-64 of a-z 0-9 . _ -, not all digits (those look like numbers).
USERNAME_RE = re.compile(r"[a-z0-9._-]{3,64}")
#: Usernames an operator may import for existing SIP users (also E.164 ones like +33612345678).
LEGACY_USERNAME_RE = re.compile(r"[A-Za-z0-9._~+-]{1,64}")
PASSWORD_MAX_LENGTH = 256
#: Item attributes written only when set (an Update removes them otherwise): `pending_until`
#: is the Accounts table's TTL attribute, which must be absent, not 0, on an active account.
OPTIONAL_ATTRIBUTES = ("ha1_md5", "ha1_sha256", "phone", "pending_until")


@dataclass(frozen=True)
class Account:
    username: str
    domain: str
    ha1_md5: str | None = None
    ha1_sha256: str | None = None
    phone: str | None = None  # E.164
    discoverable: bool = True
    disabled: bool = False
    created_at: int = 0  # epoch seconds, like every time stored in DynamoDB here
    updated_at: int = 0
    version: int = 0  # optimistic concurrency: every write is conditioned on it and bumps it
    # When the account's sessions were last revoked (recovery, new password), in epoch
    # milliseconds: the stream of that change ends the SIP dialogs and registrations made
    # before it.
    revoked_at: int = 0
    # An account made by a Linphone app with an account-creation token is pending until its
    # owner proves a phone number: it may sign in to the account API (to link the number) but
    # not to SIP, and is deleted (DynamoDB TTL) at this time if no number comes. 0: active.
    pending_until: int = 0

    @property
    def activated(self) -> bool:
        return not self.pending_until

    @property
    def aor(self) -> str:
        """The address of record, and the item key: the username folded to lower case, so
        that `Bob` and `bob` are one identity (lookups fold the same way)."""
        return aor_for(self.username, self.domain)

    @property
    def sip_uri(self) -> str:
        return "sip:" + self.aor

    def ha1s(self) -> dict[str, str]:
        """{"MD5": hex, "SHA-256": hex} for the HA1s this account has (what SIP digest needs)."""
        pairs = {"MD5": self.ha1_md5, "SHA-256": self.ha1_sha256}
        return {alg: value for alg, value in pairs.items() if value}

    def public(self) -> dict[str, Any]:
        """The account as `GET /v1/accounts/me` shows it (no HA1)."""
        return {
            "username": self.username,
            "sip_uri": self.sip_uri,
            "phone": self.phone,
            "discoverable": self.discoverable,
            "created_at": clock.iso(self.created_at),
            "updated_at": clock.iso(self.updated_at),
        }

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "aor": self.aor,
            "username": self.username,
            "domain": self.domain,
            "discoverable": self.discoverable,
            "disabled": self.disabled,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "version": self.version,
            "revoked_at": self.revoked_at,
        }
        for name in OPTIONAL_ATTRIBUTES:
            if getattr(self, name):
                item[name] = getattr(self, name)
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Account:
        return cls(
            username=item["username"],
            domain=item["domain"],
            ha1_md5=item.get("ha1_md5") or None,
            ha1_sha256=item.get("ha1_sha256") or None,
            phone=item.get("phone") or None,
            discoverable=bool(item.get("discoverable", True)),
            disabled=bool(item.get("disabled", False)),
            created_at=int(item.get("created_at", 0)),
            updated_at=int(item.get("updated_at", 0)),
            version=int(item.get("version", 0)),
            revoked_at=int(item.get("revoked_at", 0)),
            pending_until=int(item.get("pending_until", 0)),
        )

    def gone(self, now: float) -> bool:
        """A pending account past its deadline: DynamoDB's TTL deletes it within a day or
        two; until then it is treated as deleted."""
        return bool(self.pending_until) and self.pending_until <= now


# --- Validation ---------------------------------------------------------------------------


def domain() -> str:
    return settings.get().sip_domain.lower()


def fold(username: str) -> str:
    """The stored fold of a username: what makes two usernames one identity. Usernames are
    ASCII (see the patterns above), so lower-casing is the whole fold."""
    return username.lower()


def aor_for(username: str, domain_name: str | None = None) -> str:
    """The address of record of the account named `username` (folded: one identity per name)."""
    return f"{fold(username)}@{(domain_name or domain()).lower()}"


def validate_username(raw: object, *, legacy: bool = False) -> str:
    """A username as chosen at sign-up (or, with `legacy`, imported by an operator)."""
    if not isinstance(raw, str):
        raise DomainError("invalid_username", "username: expected a string")
    if legacy:
        if not LEGACY_USERNAME_RE.fullmatch(raw):
            raise DomainError(
                "invalid_username", "username: 1 to 64 characters among A-Z a-z 0-9 . _ ~ + -"
            )
        return raw
    if not USERNAME_RE.fullmatch(raw):
        raise DomainError(
            "invalid_username", "username: 3 to 64 characters among a-z 0-9 . _ - (lower case)"
        )
    if raw.isdigit():
        raise DomainError("invalid_username", "username: cannot be all digits")
    return raw


def validate_password(raw: object, *, field: str = "password") -> str:
    minimum = settings.get().password_min_length
    if not isinstance(raw, str):
        raise DomainError("invalid_field", f"{field}: expected a string")
    if len(raw) < minimum or len(raw) > PASSWORD_MAX_LENGTH:
        raise DomainError(
            "invalid_field", f"{field}: {minimum} to {PASSWORD_MAX_LENGTH} characters"
        )
    # Control characters cannot be typed reliably and break HTTP Basic headers.
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise DomainError("invalid_field", f"{field}: control characters are not allowed")
    return raw
