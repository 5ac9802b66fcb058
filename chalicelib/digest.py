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
from collections.abc import Iterable
from dataclasses import dataclass, field

from chalicelib import clock

ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
# Strongest first: clients pick the first one they support (RFC 7616 §3.7, RFC 8760 §2.4).
OFFERED = ("SHA-256", "MD5")

# RFC 3261 §25.1 token and quoted-string (RFC 7230's are the same sets for these headers).
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_QUOTED = r'"(?:[\t !#-\[\]-~\x80-\U0010ffff]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*"'
_TOKEN_RE = re.compile(_TOKEN)
_AUTH_PARAM_RE = re.compile(rf"[ \t]*({_TOKEN})[ \t]*=[ \t]*({_TOKEN}|{_QUOTED})[ \t]*")
_TOKEN68_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*\Z")


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


@dataclass(frozen=True)
class DigestCredentials:
    """An Authorization value (or a challenge): its scheme and unquoted parameters.

    One parser serves SIP and HTTP, so both refuse the same malformed or ambiguous headers."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token68: str | None = None  # e.g. `Basic dXNlcjpwYXNz` (RFC 7235), never valid in Digest

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.params.get(name.lower(), default)

    @property
    def is_digest(self) -> bool:
        return self.scheme.lower() == "digest"


class MalformedCredentials(ValueError):
    """Not `scheme token68` nor `scheme k=v, ...`, or a parameter given twice."""


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return raw


def parse_credentials(value: str) -> DigestCredentials:
    """`Digest username="a", realm="b", nc=00000001, ...` (RFC 3261 §25.1, RFC 7235 §2.1).

    A repeated parameter is refused rather than resolved: two `username`s could make the
    checker and the logger see different identities."""
    v = value.strip()
    m = _TOKEN_RE.match(v)
    if not m or (m.end() < len(v) and v[m.end()] not in " \t"):
        raise MalformedCredentials("bad credentials")
    pos, n = m.end(), len(v)
    t68 = _TOKEN68_RE.match(v[pos:].strip(" \t"))
    if t68:
        return DigestCredentials(m.group(0), {}, t68.group(0))
    params: dict[str, str] = {}
    first = True
    while pos < n:
        if not first:
            if v[pos] != ",":
                raise MalformedCredentials("bad credentials")
            pos += 1
        pm = _AUTH_PARAM_RE.match(v, pos)
        if not pm:
            raise MalformedCredentials("bad credentials")
        key = pm.group(1).lower()
        if key in params:
            raise MalformedCredentials(f"repeated {key} in credentials")
        params[key] = _unquote(pm.group(2))
        pos = pm.end()
        first = False
    return DigestCredentials(m.group(0), params)


def parse_params(value: str) -> dict[str, str]:
    """The parameters of a Digest header value; {} for another scheme or a malformed one."""
    try:
        cred = parse_credentials(value)
    except MalformedCredentials:
        return {}
    return cred.params if cred.is_digest else {}


class Nonces:
    """Stateless nonces: `<timestamp hex>.<random>.<hmac>` valid for `ttl` seconds.

    `bind` ties a nonce to what the HMAC also covers without carrying it: the SIP edge binds
    the source address and its own incarnation, so a nonce answered from another address, or
    at another edge task whose memory never saw its counts, is not ours."""

    def __init__(self, key: str, ttl: int) -> None:
        self._key = key
        self._ttl = ttl

    def _mac(self, stamp: str, salt: str, realm: str, bind: str) -> str:
        bound = f".{bind}" if bind else ""
        return keyed_hash(self._key, f"{stamp}.{salt}.{realm}{bound}", length=32)

    def make(self, realm: str, now: float | None = None, *, bind: str = "") -> str:
        stamp = format(int(now if now is not None else clock.now()), "x")
        salt = secrets.token_hex(4)
        return f"{stamp}.{salt}.{self._mac(stamp, salt, realm, bind)}"

    @staticmethod
    def issued(nonce: str) -> int | None:
        """When a well-formed nonce says it was made (check its MAC first)."""
        try:
            return int(nonce.split(".")[0], 16)
        except ValueError:
            return None

    def check(
        self,
        nonce: str,
        realm: str,
        now: float | None = None,
        *,
        bind: str = "",
        ttl: float | None = None,
    ) -> str:
        """'ok', 'stale' (ours but older than `ttl`, default the lifetime) or 'invalid'."""
        parts = nonce.split(".")
        if len(parts) != 3:
            return "invalid"
        stamp, salt, mac = parts
        if not hmac.compare_digest(mac, self._mac(stamp, salt, realm, bind)):
            return "invalid"
        issued = self.issued(nonce)
        if issued is None:
            return "invalid"
        age = (now if now is not None else clock.now()) - issued
        return "ok" if -5 <= age <= (self._ttl if ttl is None else ttl) else "stale"


def challenge(realm: str, nonce: str, algorithm: str, *, stale: bool = False) -> str:
    """One `Digest ...` challenge value (WWW-Authenticate / Proxy-Authenticate)."""
    value = f'Digest realm="{realm}", nonce="{nonce}", algorithm={algorithm}, qop="auth"'
    return value + (", stale=true" if stale else "")


def offered_to(
    user_agent: str | None, algorithms: Iterable[str], md5_agents: Iterable[str]
) -> tuple[str, ...]:
    """The algorithms to challenge one client with, one challenge each, strongest first.

    RFC 8760 §2.4 has the UAS send one challenge per algorithm and the UAC answer the topmost
    one it supports: Linphone 5.1 does, and so gets SHA-256. Some stacks read only the first
    challenge and give up when they cannot do it (libre in baresip 1.0: "Function not
    implemented"). A client whose User-Agent contains one of `md5_agents` is challenged with
    MD5 alone, when MD5 is offered at all; it would have answered MD5 anyway, so the claim
    gives nobody a weaker login than offering both.
    """
    offered = tuple(algorithms)
    agent = (user_agent or "").lower()
    if "MD5" in offered and any(a.lower() in agent for a in md5_agents if a):
        return ("MD5",)
    return offered


def verify(params: dict[str, str], method: str, ha1_by_algorithm: dict[str, str]) -> bool:
    """Check a parsed Authorization against the stored HA1 of its algorithm."""
    algorithm = params.get("algorithm", "MD5").upper()
    if algorithm not in ALGORITHMS or algorithm not in ha1_by_algorithm:
        return False
    qop = params.get("qop")
    # RFC 2069 answers (no qop) carry no count, so nothing could tell a replay: refused.
    if qop != "auth" or not (params.get("nc") and params.get("cnonce")):
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

    Kept in one process's memory, for at least the lifetime `ttl` of the nonces it checks, so a
    count is checked for a nonce's whole life. Bounded: when more nonces are in use than it
    holds, the oldest are forgotten and `horizon` moves past them; a nonce issued before the
    horizon that is not remembered may have been seen, so it counts as a replay. A client that
    re-sends an old Authorization verbatim is challenged again with `stale=true`, which it
    answers with fresh credentials without asking its user.
    """

    def __init__(self, ttl: float, max_nonces: int = 100_000) -> None:
        self._ttl = ttl
        self._max = max_nonces
        self._seen: dict[str, tuple[int, float]] = {}  # insertion-ordered: oldest first
        self.horizon = float("-inf")

    def __len__(self) -> int:
        return len(self._seen)

    def knows(self, nonce: str) -> bool:
        return nonce in self._seen

    def is_replay(self, nonce: str, nc: str | None, issued: float | None = None) -> bool:
        """True for a count not above the last one, a missing or bad count (qop=auth has one),
        or a forgotten nonce issued before the horizon."""
        try:
            count = int(nc or "", 16)
        except ValueError:
            return True
        seen = self._seen.get(nonce)
        if seen is None:
            return issued is not None and issued <= self.horizon
        return count <= seen[0]

    def record(self, nonce: str, nc: str | None, now: float) -> None:
        try:
            count = int(nc or "", 16)
        except ValueError:
            return
        previous = self._seen.pop(nonce, (0, now))
        self._seen[nonce] = (max(count, previous[0]), previous[1])
        while self._seen:
            oldest, (_, since) = next(iter(self._seen.items()))
            expired = now - since > self._ttl
            if len(self._seen) <= self._max and not expired:
                break
            del self._seen[oldest]
            if not expired:  # forgotten while it may still be used
                self.horizon = max(self.horizon, since)
