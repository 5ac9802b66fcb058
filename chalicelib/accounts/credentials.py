"""Credentials: the HA1s an account stores instead of its password, and checking against them."""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

from chalicelib import digest, settings
from chalicelib.accounts.model import Account, domain, validate_password
from chalicelib.errors import DomainError

HA1_LENGTHS = {"MD5": 32, "SHA-256": 64}
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class Credentials:
    """What an account stores to check passwords and SIP digests: HA1s, never the password.

    An account created from one HA1 (the Linphone assistant sends an MD5 one) has only that one;
    the other is filled in the first time the password is seen (HTTP Basic)."""

    ha1_md5: str | None = None
    ha1_sha256: str | None = None

    def fingerprint(self) -> str:
        """A keyed digest of these credentials, to tell a retried request from a different one."""
        data = f"{self.ha1_md5 or ''}:{self.ha1_sha256 or ''}"
        return digest.keyed_hash(settings.get().code_hash_key, data)


def credentials_from_password(
    username: str, password: object, domain_name: str | None = None
) -> Credentials:
    pairs = digest.ha1_pair(username, domain_name or domain(), validate_password(password))
    return Credentials(ha1_md5=pairs["ha1_md5"], ha1_sha256=pairs["ha1_sha256"])


def credentials_from_ha1(ha1: object, algorithm: object = "MD5") -> Credentials:
    """Credentials from a client-computed HA1 = H(username:domain:password) in `algorithm`."""
    if not isinstance(algorithm, str) or algorithm.upper() not in HA1_LENGTHS:
        raise DomainError("invalid_field", "algorithm: expected MD5 or SHA-256")
    algorithm = algorithm.upper()
    if (
        not isinstance(ha1, str)
        or len(ha1) != HA1_LENGTHS[algorithm]
        or not _HEX.fullmatch(ha1.lower())
    ):
        raise DomainError(
            "invalid_field", f"ha1: expected {HA1_LENGTHS[algorithm]} hex digits ({algorithm})"
        )
    if algorithm == "MD5":
        return Credentials(ha1_md5=ha1.lower())
    return Credentials(ha1_sha256=ha1.lower())


def check_password(account: Account, password: str) -> bool:
    """Whether `password` matches the stored HA1s (constant-time comparisons)."""
    ok = False
    for algorithm, stored in account.ha1s().items():
        candidate = digest.ha1(algorithm, account.username, account.domain, password)
        ok = hmac.compare_digest(candidate, stored) or ok
    return ok and bool(account.ha1s())
