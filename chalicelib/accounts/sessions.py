"""Web sessions: which account a browser is signed in as, kept in DynamoDB with a TTL.

The browser holds a random token (its session cookie); the table (`WebSessions`) holds only a
keyed hash of it, so reading the table gives no way in. A session is good while it is
unexpired (`WEB_SESSION_IDLE` without a request, `WEB_SESSION_MAX_AGE` at most) and its
account is still the one that signed in: enabled, not deleted (nor deleted and made again
under the same name), and its credentials not replaced since (`Account.revoked_at`, moved by a
new password or a recovery). So a new password, a recovery, a disable or a delete ends every
session at once, whichever way it was made (web, REST, XML-RPC, the operator's tool);
`end_all` then deletes the items, called by the live-update stream handler where it ends the
account's SIP registrations and dialogs. Expired items are deleted when met, and by the TTL.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from chalicelib import clock, digest, dynamo, settings, tables
from chalicelib.accounts import store
from chalicelib.accounts.model import Account
from chalicelib.aws import client

#: Random bytes in a session token (URL-safe base64 in the cookie).
TOKEN_BYTES = 32
#: Longest cookie value considered; anything longer is no token of ours.
MAX_TOKEN_LENGTH = 128


@dataclass(frozen=True)
class Session:
    """A signed-in browser. `key` is the keyed hash of its token (the item key)."""

    key: str
    aor: str
    account_created_at: int  # tells a re-created account of the same name from this one
    created_ms: int  # epoch ms: compared with the account's revoked_at
    last_seen: int
    expires_at: int

    def to_item(self) -> dict[str, Any]:
        return {
            "session_hash": self.key,
            "aor": self.aor,
            "account_created_at": self.account_created_at,
            "created_ms": self.created_ms,
            "last_seen": self.last_seen,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Session:
        return cls(
            key=str(item["session_hash"]),
            aor=str(item["aor"]),
            account_created_at=int(item["account_created_at"]),
            created_ms=int(item["created_ms"]),
            last_seen=int(item["last_seen"]),
            expires_at=int(item["expires_at"]),
        )

    def binding(self) -> str:
        """What the session's forms are bound to (their CSRF tokens): stable for its life,
        unknown to anyone without the token."""
        return self.key


def key_of(token: str) -> str:
    return digest.keyed_hash("web-session|" + settings.get().code_hash_key, token)


def _expiry(created: int, now: int) -> int:
    s = settings.get()
    return min(now + s.web_session_idle, created + s.web_session_max_age)


def start(account: Account) -> tuple[str, Session]:
    """A new session of `account` (just proven with its current credentials): answers the
    token for the browser and the session. Past `WEB_SESSIONS_PER_ACCOUNT`, the account's
    oldest sessions end."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    now = clock.now()
    # Never before the account's last revocation: the browser that has just changed the
    # password (in the same millisecond, or on a clock a little behind) stays signed in.
    created_ms = max(int(now * 1000), account.revoked_at)
    session = Session(
        key=key_of(token),
        aor=account.aor,
        account_created_at=account.created_at,
        created_ms=created_ms,
        last_seen=int(now),
        expires_at=_expiry(int(created_ms // 1000), int(now)),
    )
    client("dynamodb").put_item(
        TableName=tables.WEB_SESSIONS.name(), Item=dynamo.to_item(session.to_item())
    )
    _keep_newest(account.aor, session.key)
    return token, session


def _of_account(aor: str) -> list[Session]:
    table = tables.table(tables.WEB_SESSIONS)
    kwargs: dict[str, Any] = {
        "IndexName": "by_account",
        "KeyConditionExpression": Key("aor").eq(aor.lower()),
    }
    found: list[Session] = []
    while True:
        page = table.query(**kwargs)
        found += [Session.from_item(item) for item in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _keep_newest(aor: str, newest: str) -> None:
    limit = settings.get().web_sessions_per_account
    others = sorted(
        (s for s in _of_account(aor) if s.key != newest), key=lambda s: s.created_ms, reverse=True
    )
    for old in others[max(0, limit - 1) :]:
        _delete(old.key)


def _delete(key: str) -> None:
    client("dynamodb").delete_item(
        TableName=tables.WEB_SESSIONS.name(), Key={"session_hash": {"S": key}}
    )


def still_good(session: Session, account: Account | None, now: int) -> bool:
    """Whether `session` may still act for `account` (None: the account is gone)."""
    return (
        session.expires_at > now
        and account is not None
        and not account.disabled
        and account.created_at == session.account_created_at
        and session.created_ms >= account.revoked_at
    )


def resume(token: str | None) -> tuple[Session, Account] | None:
    """The session the browser's token names and its account as it is now, or None (no such
    session, expired, or ended by a change of the account: then its item is deleted). An
    active session's expiry moves forward, written at most every tenth of the idle time."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    key = key_of(token)
    raw = client("dynamodb").get_item(
        TableName=tables.WEB_SESSIONS.name(),
        Key={"session_hash": {"S": key}},
        ConsistentRead=True,
    )
    if "Item" not in raw:
        return None
    session = Session.from_item(dynamo.from_item(raw["Item"]))
    now = clock.now_int()
    account = store.get(session.aor) if session.expires_at > now else None
    if account is None or not still_good(session, account, now):
        _delete(key)
        return None
    if now - session.last_seen >= max(1, settings.get().web_session_idle // 10):
        session = _touch(session, now)
    return session, account


def _touch(session: Session, now: int) -> Session:
    expires_at = _expiry(session.created_ms // 1000, now)
    try:
        client("dynamodb").update_item(
            TableName=tables.WEB_SESSIONS.name(),
            Key={"session_hash": {"S": session.key}},
            UpdateExpression="SET last_seen = :now, expires_at = :exp",
            ConditionExpression="attribute_exists(session_hash)",  # never bring one back
            ExpressionAttributeValues=dynamo.to_item({":now": now, ":exp": expires_at}),
        )
    except ClientError as exc:
        if not dynamo.condition_failed(exc):
            raise
    return Session(
        session.key,
        session.aor,
        session.account_created_at,
        session.created_ms,
        now,
        expires_at,
    )


def end(token: str | None) -> None:
    """Sign the browser holding `token` out (nothing happens for an unknown token)."""
    if token and len(token) <= MAX_TOKEN_LENGTH:
        _delete(key_of(token))


def end_all(aor: str, *, before_ms: int | None = None) -> int:
    """Delete the sessions of `aor` made before `before_ms` (epoch ms; all if None); answers
    how many. Sessions it cannot see yet (the index is eventually consistent) fail
    `still_good` when next used, and are deleted then."""
    doomed = [s.key for s in _of_account(aor) if before_ms is None or s.created_ms < before_ms]
    for key in doomed:
        _delete(key)
    return len(doomed)
