"""Single-use, short-lived tokens handed to apps and devices: account-creation tokens (sent by
push, or earned with a validated request token), account-creation request tokens, and
provisioning links.

A token is stored only as a keyed hash of its value (the table never holds a usable token),
with its kind, what it was issued for (`data`), its expiry (the TTL) and, once used, who used
it: a keyed fingerprint of the request. Using one is a single conditional write, so two
requests can never both use a token; the answer of the request that used it is kept with it,
so a retry of that same request (same fingerprint) gets the same answer, and any other request
is refused like an unknown token. Every failure looks the same: unknown, expired, used by
another request, or spent (`max_tries` refused uses).
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from chalicelib import clock, digest, dynamo, settings, tables
from chalicelib.aws import client
from chalicelib.errors import DomainError

CREATION = "creation"  # an account-creation token: one account may be made with it
REQUEST = "request"  # an account-creation request token: validated by a person, then traded
PROVISIONING = "provisioning"  # a provisioning link: one device fetches its account's config
KINDS = frozenset({CREATION, REQUEST, PROVISIONING})
#: Token values: 128 random bits, URL-safe (they travel in paths, JSON and QR codes).
VALUE_BYTES = 16
_VALUE_MAX = 64


@dataclass(frozen=True)
class Token:
    """A token just issued: its value (given out once, never stored) and its expiry."""

    kind: str
    value: str
    expires_at: int


@dataclass(frozen=True)
class Use:
    """A token this request has just used, or a retry of the request that used it."""

    kind: str
    value: str
    data: dict[str, Any]
    fingerprint: str  # the request that used it
    replay: dict[str, Any] | None = None  # the stored answer, when this is a retry


def _key() -> str:
    return settings.get().code_hash_key


def token_id(kind: str, value: str) -> str:
    """Item key: the kind and a keyed hash of the value."""
    if kind not in KINDS:
        raise ValueError(f"unknown token kind {kind!r}")
    return f"token:{kind}:{digest.keyed_hash(_key(), kind + '|' + value)}"


def fingerprint(*parts: str) -> str:
    """A keyed digest of what identifies a request using a token (never stored in clear)."""
    return digest.keyed_hash(_key(), "use|" + "\x00".join(parts))


def invalid(kind: str) -> DomainError:
    """The one answer for every token that cannot be used: unknown, expired, used, spent."""
    return DomainError("token_invalid", f"this {kind} token is unknown, used or expired")


def well_formed(value: object) -> bool:
    """Whether `value` may be a token at all (a malformed one is looked up nowhere)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= _VALUE_MAX
        and all(c.isascii() and (c.isalnum() or c in "-_") for c in value)
    )


def encode(raw: bytes) -> str:
    """A token value from random (or keyed) bytes: URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def issue(
    kind: str, data: dict[str, Any], ttl: int, *, max_tries: int = 1, value: str | None = None
) -> Token:
    """Store a new token of `kind` for `data` (plain values), valid `ttl` seconds; answer it.

    `max_tries`: how many uses may be refused (`release(refused=True)`) before the token is
    spent. `value`: the token's value when the caller derives it (else 128 random bits)."""
    derived = value is not None
    value = value or encode(secrets.token_bytes(VALUE_BYTES))
    now = clock.now_int()
    item = {
        "token_id": token_id(kind, value),
        "kind": kind,
        "data": json.dumps(data),
        "created_at": now,
        "expires_at": now + ttl,
        "tries": 0,
        "max_tries": max_tries,
    }
    try:
        client("dynamodb").put_item(
            TableName=tables.TOKENS.name(),
            Item=dynamo.to_item(item),
            ConditionExpression="attribute_not_exists(token_id)",
        )
    except ClientError as exc:
        existing = _get(kind, value) if dynamo.condition_failed(exc) and derived else None
        if existing is None:
            raise
        # A derived value another request issued a moment ago: the same token.
        return Token(kind, value, int(existing["expires_at"]))
    return Token(kind, value, now + ttl)


def _get(kind: str, value: str) -> dict[str, Any] | None:
    raw = client("dynamodb").get_item(
        TableName=tables.TOKENS.name(),
        Key={"token_id": {"S": token_id(kind, value)}},
        ConsistentRead=True,
    )
    return dynamo.from_item(raw["Item"]) if "Item" in raw else None


def _live(item: dict[str, Any] | None, now: int) -> bool:
    return (
        item is not None
        and int(item["expires_at"]) > now
        and "used_at" not in item
        and int(item.get("tries", 0)) < int(item.get("max_tries", 1))
    )


def peek(kind: str, value: object) -> dict[str, Any] | None:
    """The data of a live (unexpired, unused, not spent) token, or None."""
    if not well_formed(value):
        return None
    assert isinstance(value, str)
    item = _get(kind, value)
    return json.loads(item["data"]) if item and _live(item, clock.now_int()) else None


def annotate(kind: str, value: str, **fields: Any) -> bool:
    """Add `fields` to the data of a live token (a request token once a person validated it);
    False when the token is not live."""
    item = _get(kind, value)
    if not _live(item, clock.now_int()):
        return False
    assert item is not None
    data = {**json.loads(item["data"]), **fields}
    try:
        client("dynamodb").update_item(
            TableName=tables.TOKENS.name(),
            Key={"token_id": {"S": item["token_id"]}},
            UpdateExpression="SET #d = :new",
            ConditionExpression="#d = :old AND attribute_not_exists(used_at)",
            ExpressionAttributeNames={"#d": "data"},
            ExpressionAttributeValues=dynamo.to_item(
                {":new": json.dumps(data), ":old": item["data"]}
            ),
        )
    except ClientError as exc:
        if dynamo.condition_failed(exc):
            return False
        raise
    return True


def use(kind: str, value: object, *, fingerprint: str, replay_window: int | None = None) -> Use:
    """Use the token `value` of `kind` for the request `fingerprint`; raise `token_invalid`.

    A used token answers again only to the same request (same fingerprint): its stored answer
    (`Use.replay`, once `complete` kept one), or, within `replay_window` seconds of its use,
    its data again (a fetch whose answer was lost on the way)."""
    if not well_formed(value):
        raise invalid(kind)
    assert isinstance(value, str)
    for _ in range(3):
        item = _get(kind, value)
        now = clock.now_int()
        if item is None or int(item["expires_at"]) <= now:
            raise invalid(kind)
        data = json.loads(item["data"])
        if "used_at" in item:
            same = hmac.compare_digest(str(item.get("used_by", "")), fingerprint)
            if same and "result" in item:
                return Use(kind, value, data, fingerprint, json.loads(item["result"]))
            if same and replay_window is not None and now - int(item["used_at"]) <= replay_window:
                return Use(kind, value, data, fingerprint)
            raise invalid(kind)
        if int(item.get("tries", 0)) >= int(item.get("max_tries", 1)):
            raise invalid(kind)
        try:
            client("dynamodb").update_item(
                TableName=tables.TOKENS.name(),
                Key={"token_id": {"S": item["token_id"]}},
                UpdateExpression="SET used_at = :now, used_by = :fp",
                ConditionExpression=(
                    "attribute_not_exists(used_at) AND expires_at > :now AND tries < max_tries"
                ),
                ExpressionAttributeValues=dynamo.to_item({":now": now, ":fp": fingerprint}),
            )
        except ClientError as exc:
            if dynamo.condition_failed(exc):
                continue  # used or refused meanwhile: look again
            raise
        return Use(kind, value, data, fingerprint)
    raise invalid(kind)


def complete(use: Use, answer: dict[str, Any]) -> None:
    """Keep the answer given for `use`, for retries of the same request."""
    client("dynamodb").update_item(
        TableName=tables.TOKENS.name(),
        Key={"token_id": {"S": token_id(use.kind, use.value)}},
        UpdateExpression="SET #r = :r",
        ConditionExpression="attribute_exists(used_at)",
        ExpressionAttributeNames={"#r": "result"},
        ExpressionAttributeValues=dynamo.to_item({":r": json.dumps(answer)}),
    )


def release(use: Use, *, refused: bool = False) -> None:
    """Make a used token usable again: the request failed for a transient reason, or (with
    `refused`) was refused for a reason that spends one of the token's tries."""
    expression = "REMOVE used_at, used_by"
    values: dict[str, Any] = {}
    if refused:
        expression += " ADD tries :one"
        values[":one"] = 1
    kwargs: dict[str, Any] = {
        "TableName": tables.TOKENS.name(),
        "Key": {"token_id": {"S": token_id(use.kind, use.value)}},
        "UpdateExpression": expression,
        "ConditionExpression": "attribute_exists(used_at) AND used_by = :fp",
        "ExpressionAttributeValues": dynamo.to_item({**values, ":fp": use.fingerprint}),
    }
    try:
        client("dynamodb").update_item(**kwargs)
    except ClientError as exc:
        if not dynamo.condition_failed(exc):
            raise
