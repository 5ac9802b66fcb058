"""Digest authentication math for SIP (RFC 3261 22, RFC 7616, RFC 8760): challenges, nonces, checks.

Pure functions only: the caller supplies the HA1 (hex of H(username:realm:password)), the
nonce key and the clock. Nonces are stateless, `<timestamp hex>.<salt>.<HMAC-SHA256>`, the
same format as `chalicelib.digest.Nonces`, so any edge task (or function) checks any other's.
Being stateless, nonce counts are not tracked: a replay within the nonce lifetime passes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any

from sip_edge.sip.message import Credentials, quote

ALGORITHMS: dict[str, Callable[..., Any]] = {
    "SHA-256": hashlib.sha256,
    "MD5": hashlib.md5,
}
# Strongest first: a client takes the first challenge it supports (RFC 8760 2.4).
OFFERED: tuple[str, ...] = ("SHA-256", "MD5")
FUTURE_SKEW = 5.0  # seconds a nonce may seem to come from the future (clock skew between tasks)


def hash_hex(algorithm: str, data: str) -> str:
    return ALGORITHMS[algorithm](data.encode("utf-8")).hexdigest()


def compute_ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    return hash_hex(algorithm, f"{username}:{realm}:{password}")


def compute_response(
    algorithm: str,
    ha1: str,
    method: str,
    uri: str,
    nonce: str,
    *,
    qop: str | None = None,
    nc: str = "",
    cnonce: str = "",
) -> str:
    """The request-digest of RFC 7616 3.4.1 (qop=auth) or RFC 2069 style (no qop)."""
    ha2 = hash_hex(algorithm, f"{method}:{uri}")
    if qop:
        return hash_hex(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return hash_hex(algorithm, f"{ha1}:{nonce}:{ha2}")


def _key(key: bytes | str) -> bytes:
    return key.encode() if isinstance(key, str) else key


def _mac(key: bytes, stamp: str, salt: str, realm: str) -> str:
    return hmac.new(key, f"{stamp}.{salt}.{realm}".encode(), hashlib.sha256).hexdigest()[:32]


def make_nonce(key: bytes | str, realm: str, now: float, salt: str | None = None) -> str:
    """A nonce any holder of `key` can check without state."""
    stamp = format(int(now), "x")
    salt = salt if salt is not None else secrets.token_hex(4)
    return f"{stamp}.{salt}.{_mac(_key(key), stamp, salt, realm)}"


class NonceStatus(Enum):
    VALID = "valid"
    STALE = "stale"  # ours, but older than max_age: re-challenge with stale=true
    INVALID = "invalid"  # not ours (forged, other realm, garbage)


def check_nonce(
    key: bytes | str, realm: str, nonce: str, now: float, max_age: float
) -> NonceStatus:
    parts = nonce.split(".")
    if len(parts) != 3:
        return NonceStatus.INVALID
    stamp, salt, mac = parts
    if not hmac.compare_digest(mac.encode(), _mac(_key(key), stamp, salt, realm).encode()):
        return NonceStatus.INVALID
    try:
        issued = int(stamp, 16)
    except ValueError:
        return NonceStatus.INVALID
    age = now - issued
    if age < -FUTURE_SKEW:
        return NonceStatus.INVALID
    return NonceStatus.VALID if age <= max_age else NonceStatus.STALE


def challenges(
    realm: str,
    nonce: str,
    *,
    stale: bool = False,
    algorithms: Iterable[str] = OFFERED,
    opaque: str | None = None,
) -> list[str]:
    """WWW-Authenticate / Proxy-Authenticate values, one per algorithm, in preference order."""
    out = []
    for algorithm in algorithms:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unsupported algorithm {algorithm}")
        value = f"Digest realm={quote(realm)}, nonce={quote(nonce)}"
        if opaque is not None:
            value += f", opaque={quote(opaque)}"
        value += f', algorithm={algorithm}, qop="auth"'
        if stale:
            value += ", stale=true"
        out.append(value)
    return out


class Verdict(Enum):
    """Outcome of `verify`; only OK lets the request through."""

    OK = "ok"
    STALE = "stale"  # right password, expired nonce: 401/407 with stale=true
    MALFORMED = "malformed"  # not Digest, or a required parameter missing: 400 or 401
    UNSUPPORTED = "unsupported"  # algorithm or qop we do not offer: 401 with a new challenge
    WRONG_REALM = "wrong_realm"
    WRONG_URI = "wrong_uri"  # digest uri differs from the Request-URI
    BAD_NONCE = "bad_nonce"  # not a nonce of ours: a fresh challenge
    WRONG_RESPONSE = "wrong_response"  # wrong password (or HA1 of another algorithm): 403


def verify(
    credentials: Credentials,
    *,
    method: str,
    realm: str,
    ha1: str,
    key: bytes | str,
    now: float,
    max_age: float = 300.0,
    request_uri: str | None = None,
) -> Verdict:
    """Check parsed (Proxy-)Authorization credentials against the HA1 of their algorithm.

    `ha1` must be the one matching `credentials.get("algorithm")` (MD5 when absent).
    `request_uri`, when given, must equal the digest `uri` parameter (RFC 7616 3.4.6).
    """
    if not credentials.is_digest:
        return Verdict.MALFORMED
    p = credentials.params
    if not all(p.get(k) for k in ("username", "realm", "nonce", "uri", "response")):
        return Verdict.MALFORMED
    if p["realm"] != realm:
        return Verdict.WRONG_REALM
    algorithm = p.get("algorithm", "MD5").upper()
    qop = p.get("qop")
    if algorithm not in ALGORITHMS or qop not in (None, "auth"):
        return Verdict.UNSUPPORTED
    if qop and not (p.get("nc") and p.get("cnonce")):
        return Verdict.MALFORMED
    if request_uri is not None and p["uri"] != request_uri:
        return Verdict.WRONG_URI
    status = check_nonce(key, realm, p["nonce"], now, max_age)
    if status is NonceStatus.INVALID:
        return Verdict.BAD_NONCE
    want = compute_response(
        algorithm,
        ha1.lower(),
        method,
        p["uri"],
        p["nonce"],
        qop=qop,
        nc=p.get("nc", ""),
        cnonce=p.get("cnonce", ""),
    )
    if not hmac.compare_digest(want.encode(), p["response"].lower().encode()):
        return Verdict.WRONG_RESPONSE
    return Verdict.OK if status is NonceStatus.VALID else Verdict.STALE
