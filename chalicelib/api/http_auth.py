"""HTTP authentication of the account routes: Basic, and Digest (RFC 7616) with SHA-256 and MD5,
both checked against the stored HA1s, realm = the SIP domain, stateless nonces whose counts
(qop=auth required) are checked in the shared rate-limit table, so no Authorization replays.

Failures answer 401 with one challenge per scheme (Digest SHA-256 first, the preferred one,
then Digest MD5, then Basic); a disabled account answers 403. Password checks sit behind the
password-guessing limits (`accounts.auth_guard`): past them, 429 with Retry-After, unchecked.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from contextvars import ContextVar
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from chalicelib import accounts, clock, digest, settings, tables
from chalicelib.accounts import auth_guard
from chalicelib.aws import client
from chalicelib.errors import DomainError

#: Longest Authorization header considered (a Digest one is a few hundred bytes).
MAX_HEADER = 4096


def _realm() -> str:
    return settings.get().sip_domain


def _nonces() -> digest.Nonces:
    s = settings.get()
    return digest.Nonces(s.nonce_key, s.nonce_ttl_seconds)


#: The client address of the request being authenticated: its nonces are bound to it (an HMAC
#: over it), so an Authorization header captured from one address is stale from any other.
_SOURCE: ContextVar[str] = ContextVar("digest_source", default="")


#: Whether the request being authenticated may answer with Basic (the Linphone apps' account
#: API challenges Digest alone: its clients answer the first challenge they can).
_BASIC: ContextVar[bool] = ContextVar("basic_offered", default=True)


def challenges(*, stale: bool = False) -> list[str]:
    """The WWW-Authenticate values of a 401, one header line each."""
    realm = _realm()
    nonces = _nonces()
    offered = [
        digest.challenge(realm, nonces.make(realm, bind=_SOURCE.get()), algorithm, stale=stale)
        for algorithm in digest.OFFERED
    ]
    if not _BASIC.get():
        return offered
    return [*offered, f'Basic realm="{realm}", charset="UTF-8"']


def unauthorized(message: str, *, stale: bool = False) -> DomainError:
    return DomainError(
        "unauthorized", message, headers={"WWW-Authenticate": challenges(stale=stale)}
    )


def authenticate(
    headers: Mapping[str, str],
    method: str,
    path: str,
    *,
    source: str | None = None,
    identity: str | None = None,
    basic: bool = True,
    pending_ok: bool = False,
) -> accounts.Account:
    """The account the request's Authorization header proves, or raise 401/403 (429 past the
    password-guessing limits for this account and `source`, the client's address).

    `path` is the request path as the client sent it (a Digest `uri` must name it).
    `identity`: the address of record the request claims (the Linphone apps' `From`); the
    credentials must prove that account, else 401 as for a wrong password. `basic=False`
    offers and accepts Digest only. A pending account (no number proven yet) is refused
    (403 `account_pending`) unless `pending_ok`."""
    bound = _SOURCE.set(source or "")
    offered = _BASIC.set(basic)
    try:
        account = _authenticate(headers, method, path, source, identity)
    finally:
        _BASIC.reset(offered)
        _SOURCE.reset(bound)
    if not account.activated and not pending_ok:
        raise DomainError(
            "account_pending", "this account has no phone number yet: link one to activate it"
        )
    return account


def _authenticate(
    headers: Mapping[str, str],
    method: str,
    path: str,
    source: str | None,
    identity: str | None,
) -> accounts.Account:
    value = headers.get("authorization") or ""
    if not value:
        raise unauthorized("authentication required")
    if len(value) > MAX_HEADER:
        raise unauthorized("authorization header too large")
    scheme = value.split(" ", 1)[0].lower()
    if scheme == "basic" and _BASIC.get():
        account = _basic(value, source)
    elif scheme == "digest":
        account = _digest(value, method, path, source)
    else:
        raise unauthorized("unsupported authentication scheme")
    if identity is not None and account.aor != identity.lower():
        # Right credentials for another account than the one named: the claim is what fails.
        raise unauthorized("the credentials are not those of the account named")
    if account.disabled:
        raise DomainError("account_disabled", "this account is disabled")
    return account


def _attempt(username: str, source: str | None) -> auth_guard.Attempt:
    return auth_guard.Attempt(accounts.aor_for(username), source)


def _basic(value: str, source: str | None) -> accounts.Account:
    try:
        decoded = base64.b64decode(value.split(" ", 1)[1].strip(), validate=True).decode("utf-8")
    except (IndexError, binascii.Error, UnicodeDecodeError):
        raise unauthorized("malformed Basic credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep:
        raise unauthorized("malformed Basic credentials")
    account = auth_guard.guarded(
        _attempt(username, source), lambda: accounts.authenticate_password(username, password)
    )
    if account is None:
        raise unauthorized("wrong username or password")
    return account


def _uri_matches(uri: str, path: str) -> bool:
    # The client signs the path it sent; behind API Gateway's stage or a base path mapping the
    # path we see may lack a prefix of it.
    signed = urlsplit(uri).path or uri
    return bool(path) and (signed == path or signed.endswith(path))


def _digest(value: str, method: str, path: str, source: str | None) -> accounts.Account:
    params = digest.parse_params(value)
    required = ("username", "realm", "nonce", "uri", "response")
    if not params or any(not params.get(name) for name in required):
        raise unauthorized("malformed Digest credentials")
    if params.get("userhash", "false").lower() == "true":
        raise unauthorized("userhash is not supported")
    realm = _realm()
    if params["realm"] != realm:
        raise unauthorized("wrong realm")
    state = _nonces().check(params["nonce"], realm, bind=_SOURCE.get())
    if state == "invalid":
        # A recent nonce of our shape, given to another address (the client's moved, or the
        # header was captured): a fresh one, stale=true, lets a real client retry unprompted.
        issued = digest.Nonces.issued(params["nonce"])
        recent = (
            issued is not None and 0 <= clock.now() - issued <= settings.get().nonce_ttl_seconds
        )
        raise unauthorized("unknown nonce", stale=recent and params["nonce"].count(".") == 2)
    if not _uri_matches(params["uri"], path):
        raise unauthorized("digest uri does not match the request")

    def check() -> accounts.Account | None:
        account = (
            accounts.get_by_username(params["username"])
            if accounts.LEGACY_USERNAME_RE.fullmatch(params["username"])
            else None
        )
        return account if account and digest.verify(params, method, account.ha1s()) else None

    account = auth_guard.guarded(_attempt(params["username"], source), check)
    if account is None:
        raise unauthorized("wrong username or password")
    if state == "stale":
        # Right credentials, old nonce: the client retries with a fresh one, no prompt.
        raise unauthorized("nonce expired", stale=True)
    _count(params["nonce"], params.get("nc") or "")
    return account


def _count(nonce: str, nc: str) -> None:
    """RFC 7616 §3.4.5: each nonce count once, rising, across every Lambda instance: the
    highest one seen is kept in the shared rate-limit table until the nonce expires. A count
    not above it is a replayed Authorization: 401 stale, which a client answers anew."""
    count = int(nc, 16)  # digest.verify accepted it: qop=auth with a hex count
    issued = digest.Nonces.issued(nonce) or clock.now_int()
    try:
        client("dynamodb").update_item(
            TableName=tables.RATE_LIMITS.name(),
            Key={"bucket": {"S": "nonce#" + digest.keyed_hash("nc", nonce, length=32)}},
            UpdateExpression="SET nc = :nc, expires_at = :exp",
            ConditionExpression="attribute_not_exists(#b) OR nc < :nc",
            ExpressionAttributeNames={"#b": "bucket"},
            ExpressionAttributeValues={
                ":nc": {"N": str(count)},
                ":exp": {"N": str(issued + settings.get().nonce_ttl_seconds + 60)},
            },
        )
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            raise unauthorized("nonce count replayed", stale=True) from None
        raise
