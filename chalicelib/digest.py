"""Digest access authentication math shared by HTTP (RFC 7616) and SIP (RFC 3261, RFC 8760).

The two protocols use the same computation; only the transport of the parameters differs.
Stored credentials are HA1 = H(username:realm:password) in MD5 and SHA-256 hex; nonces are
stateless: a timestamp and an HMAC over it, so any instance can check any other's nonce. The
same keyed hash names every secret the tables keep without holding it (`keyed_hash`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from chalicelib import clock

ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
# Strongest first: clients pick the first one they support (RFC 7616 §3.7, RFC 8760 §2.4).
OFFERED = ("SHA-256", "MD5")

_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]+)\s*(?:,|$)')


def keyed_hash(key: str, message: str | bytes, *, length: int = 64) -> str:
    """Hex HMAC-SHA256 of `message` under `key`, cut to `length` hex digits.

    Phone-index keys, code ids and MACs, request fingerprints, rate-limit buckets and nonces
    are all this; a stored value changes if this does."""
    data = message.encode() if isinstance(message, str) else message
    return hmac.new(key.encode(), data, hashlib.sha256).hexdigest()[:length]


def h(algorithm: str, data: str) -> str:
    return ALGORITHMS[algorithm](data.encode("utf-8")).hexdigest()


def ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    return h(algorithm, f"{username}:{realm}:{password}")


def ha1_pair(username: str, realm: str, password: str) -> dict[str, str]:
    """Both stored HA1s of an account: {"ha1_md5", "ha1_sha256"}."""
    return {
        "ha1_md5": ha1("MD5", username, realm, password),
        "ha1_sha256": ha1("SHA-256", username, realm, password),
    }


def expected_response(
    algorithm: str,
    ha1_hex: str,
    method: str,
    uri: str,
    nonce: str,
    *,
    qop: str | None = None,
    nc: str = "",
    cnonce: str = "",
) -> str:
    ha2 = h(algorithm, f"{method}:{uri}")
    if qop:
        return h(algorithm, f"{ha1_hex}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return h(algorithm, f"{ha1_hex}:{nonce}:{ha2}")


def parse_params(value: str) -> dict[str, str]:
    """Parse `Digest k=v, k="v"` into a dict (keys lower-cased, quotes removed)."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return {}
    out: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            return {}
        raw = m.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        out[m.group(1).lower()] = raw
        pos = m.end()
    return out


class Nonces:
    """Stateless nonces: `<timestamp hex>.<random>.<hmac>` valid for `ttl` seconds."""

    def __init__(self, key: str, ttl: int) -> None:
        self._key = key
        self._ttl = ttl

    def _mac(self, stamp: str, salt: str, realm: str) -> str:
        return keyed_hash(self._key, f"{stamp}.{salt}.{realm}", length=32)

    def make(self, realm: str, now: float | None = None) -> str:
        stamp = format(int(now if now is not None else clock.now()), "x")
        salt = secrets.token_hex(4)
        return f"{stamp}.{salt}.{self._mac(stamp, salt, realm)}"

    def check(self, nonce: str, realm: str, now: float | None = None) -> str:
        """'ok', 'stale' (ours but expired) or 'invalid' (not ours)."""
        parts = nonce.split(".")
        if len(parts) != 3:
            return "invalid"
        stamp, salt, mac = parts
        if not hmac.compare_digest(mac, self._mac(stamp, salt, realm)):
            return "invalid"
        try:
            issued = int(stamp, 16)
        except ValueError:
            return "invalid"
        age = (now if now is not None else clock.now()) - issued
        return "ok" if -5 <= age <= self._ttl else "stale"


def challenge(realm: str, nonce: str, algorithm: str, *, stale: bool = False) -> str:
    """One `Digest ...` challenge value (WWW-Authenticate / Proxy-Authenticate)."""
    value = f'Digest realm="{realm}", nonce="{nonce}", algorithm={algorithm}, qop="auth"'
    return value + (", stale=true" if stale else "")


def verify(params: dict[str, str], method: str, ha1_by_algorithm: dict[str, str]) -> bool:
    """Check a parsed Authorization against the stored HA1 of its algorithm."""
    algorithm = params.get("algorithm", "MD5").upper()
    if algorithm not in ALGORITHMS or algorithm not in ha1_by_algorithm:
        return False
    qop = params.get("qop")
    if qop not in (None, "auth"):
        return False
    if qop and not (params.get("nc") and params.get("cnonce")):
        return False
    try:
        want = expected_response(
            algorithm,
            ha1_by_algorithm[algorithm],
            method,
            params["uri"],
            params["nonce"],
            qop=qop,
            nc=params.get("nc", ""),
            cnonce=params.get("cnonce", ""),
        )
    except KeyError:
        return False
    return hmac.compare_digest(want, params.get("response", "").lower())


class NonceCounts:
    """Replay guard for stateless nonces: the highest nonce-count seen per nonce (RFC 7616 §3.4.5).

    Kept in the memory of one edge and bounded; a nonce older than its lifetime is forgotten
    (it is stale anyway). A client that re-sends an old Authorization verbatim is challenged
    again with `stale=true`, which it answers with fresh credentials without asking its user.
    """

    def __init__(self, ttl: int, max_nonces: int = 100_000) -> None:
        self._ttl = ttl
        self._max = max_nonces
        self._seen: dict[str, tuple[int, float]] = {}  # insertion-ordered: oldest first

    def is_replay(self, nonce: str, nc: str | None) -> bool:
        if not nc:
            return False  # no qop: RFC 2069 clients have no count to check
        try:
            count = int(nc, 16)
        except ValueError:
            return True
        seen = self._seen.get(nonce)
        return seen is not None and count <= seen[0]

    def record(self, nonce: str, nc: str | None, now: float) -> None:
        if not nc:
            return
        try:
            count = int(nc, 16)
        except ValueError:
            return
        previous = self._seen.pop(nonce, (0, now))
        self._seen[nonce] = (max(count, previous[0]), previous[1])
        while self._seen:
            oldest, (_, since) = next(iter(self._seen.items()))
            if len(self._seen) <= self._max and now - since <= self._ttl:
                break
            del self._seen[oldest]
