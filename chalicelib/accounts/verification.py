"""Verification codes: send one by SMS within the anti-abuse limits, then check it once.

A code is stored only as HMAC(code key, binding + code), bound to its purpose, its phone number
and its subject (the requested username, or the account linking the number). It lives
`code_ttl_seconds`, dies after `code_max_attempts` wrong tries (410), and a new request replaces
it. Consuming it is one conditional write, so two requests can never both use one code; the
answer of the request that used it is kept with it, so a retry gets the same answer.
"""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ClientError

from chalicelib import clock, digest, dynamo, settings, tables
from chalicelib.accounts import phone, rate_limits, sms
from chalicelib.aws import client
from chalicelib.errors import DomainError
from chalicelib.observability import logger, metrics

SIGNUP = "signup"
LINK = "link"
PURPOSES = frozenset({SIGNUP, LINK})


@dataclass(frozen=True)
class Claim:
    """A code this request has just used (or a retry of the request that used it)."""

    code_id: str
    purpose: str
    phone: str  # E.164 the code was sent to
    subject: str | None
    token: str
    replay: dict[str, Any] | None = None  # the stored answer, when this is a retry


@dataclass(frozen=True)
class Pending:
    """What is known of the latest code of (purpose, lookup) without using it."""

    phone: str
    subject: str | None
    used: bool
    payload: dict[str, str]  # what the requester asked to keep with the code (see `send`)


def _key() -> str:
    return settings.get().code_hash_key


def code_id(purpose: str, lookup: str) -> str:
    """Item key: the purpose and a keyed hash of what the confirming request knows (the number
    for sign-up, the account for a link)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}")
    return f"{purpose}:{digest.keyed_hash(_key(), lookup)}"


def _mac(cid: str, e164: str, subject: str | None, code: str) -> str:
    return digest.keyed_hash(_key(), "|".join((cid, e164, subject or "", code)))


def new_code() -> str:
    length = settings.get().code_length
    return str(secrets.randbelow(10**length)).zfill(length)


def _check_format(code: object) -> str:
    length = settings.get().code_length
    if not isinstance(code, str) or not code.isascii() or not code.isdigit():
        raise DomainError("invalid_field", f"code: expected a string of {length} digits")
    if len(code) != length:
        raise DomainError("invalid_field", f"code: expected {length} digits")
    return code


def well_formed(code: object) -> bool:
    """Whether `code` has the shape of a code (a malformed one never counts as a try)."""
    try:
        _check_format(code)
    except DomainError:
        return False
    return True


def check_region(e164: str) -> None:
    """403 `region_not_allowed` unless SMS may be sent to the number's country."""
    region = phone.region_of(e164)
    if region not in settings.get().sms_allowed_regions:
        raise DomainError(
            "region_not_allowed",
            f"phone: SMS cannot be sent to numbers of {region or 'that'} region",
        )


def send(
    purpose: str,
    lookup: str,
    e164: str,
    subject: str | None,
    *,
    source_ip: str,
    payload: dict[str, str] | None = None,
) -> int:
    """Send a new code for (purpose, e164, subject), replacing any pending one; answer its
    lifetime. `payload` is kept with the code for the request that will use it (the Linphone
    assistant gives the credentials at request time, not at confirm time). Raises 403 (region),
    429 (a limit, nothing reserved) or 503 (SNS, nothing burnt: the reserved quota is released
    and the previous code stays valid)."""
    s = settings.get()
    check_region(e164)
    reserved = rate_limits.reserve_sms(e164, source_ip)
    code = new_code()
    try:
        sms.send_code(e164, code)
    except DomainError:
        rate_limits.release_all(reserved)
        raise
    cid = code_id(purpose, lookup)
    now = clock.now_int()
    item: dict[str, Any] = {
        "code_id": cid,
        "purpose": purpose,
        "phone": e164,
        "code_mac": _mac(cid, e164, subject, code),
        "attempts": 0,
        "max_attempts": s.code_max_attempts,
        "created_at": now,
        "expires_at": now + s.code_ttl_seconds,
    }
    if subject is not None:
        item["subject"] = subject
    if payload:
        item["payload"] = json.dumps(payload)
    # Stored after the SMS left: a failed send leaves the previous code in place.
    client("dynamodb").put_item(
        TableName=tables.VERIFICATION_CODES.name(), Item=dynamo.to_item(item)
    )
    metrics.add_metric(name="CodesSent", unit=MetricUnit.Count, value=1)
    logger.info("code sent", extra={"purpose": purpose, "phone": phone.mask(e164)})
    return s.code_ttl_seconds


def _get(cid: str) -> dict[str, Any] | None:
    raw = client("dynamodb").get_item(
        TableName=tables.VERIFICATION_CODES.name(), Key={"code_id": {"S": cid}}, ConsistentRead=True
    )
    return dynamo.from_item(raw["Item"]) if "Item" in raw else None


def peek(purpose: str, lookup: str) -> Pending | None:
    """The latest unexpired code of (purpose, lookup), used or not, without touching it."""
    item = _get(code_id(purpose, lookup))
    if item is None or int(item["expires_at"]) <= clock.now_int():
        return None
    return Pending(
        phone=item["phone"],
        subject=item.get("subject"),
        used="used_at" in item,
        payload=json.loads(item["payload"]) if "payload" in item else {},
    )


def _failure(purpose: str, reason: str) -> None:
    metrics.add_metric(name="CodeFailures", unit=MetricUnit.Count, value=1)
    logger.info("code refused", extra={"purpose": purpose, "reason": reason})


def consume(
    purpose: str,
    lookup: str,
    code: object,
    *,
    fingerprint: str,
    e164: str | None = None,
    subject: str | None = None,
) -> Claim:
    """Use the pending code of (purpose, lookup). `e164`/`subject`, when given, must be what the
    code was bound to. `fingerprint` identifies the request's content: a retry with the same
    code and fingerprint gets `Claim.replay`, a different request using a used code gets 409.

    Raises code_not_found (404), code_mismatch (400, one try used), code_expired (410: expired,
    dead after too many tries, or already used) or invalid_field (not counted as a try)."""
    code = _check_format(code)
    cid = code_id(purpose, lookup)
    for _ in range(3):
        item = _get(cid)
        if item is None or (e164 is not None and item["phone"] != e164):
            _failure(purpose, "none pending")
            raise DomainError("code_not_found", "no code is pending: request one first")
        if subject is not None and item.get("subject") != subject:
            _failure(purpose, "other subject")
            raise DomainError("code_not_found", "no code is pending: request one first")
        now = clock.now_int()
        if int(item["expires_at"]) <= now:
            _failure(purpose, "expired")
            raise DomainError("code_expired", "the code has expired: request a new one")
        mac = _mac(cid, item["phone"], item.get("subject"), code)
        right = hmac.compare_digest(mac, item["code_mac"])
        if "used_at" in item:
            if not right:
                _failure(purpose, "used")
                raise DomainError("code_expired", "the code was already used: request a new one")
            return _replay(item, fingerprint)
        attempts, limit = int(item["attempts"]), int(item["max_attempts"])
        if attempts >= limit:
            _failure(purpose, "dead")
            raise DomainError("code_expired", "too many wrong codes: request a new one")
        if right:
            claim = _try_use(item, mac, fingerprint, now)
            if claim is not None:
                return claim
            continue  # someone else used it, or the last try went meanwhile: look again
        left = _count_wrong_try(item)
        if left is None:
            continue  # replaced or used meanwhile: look again
        _failure(purpose, "mismatch")
        if left == 0:
            raise DomainError("code_expired", "too many wrong codes: request a new one")
        raise DomainError("code_mismatch", f"wrong code: {left} tries left")
    raise DomainError("conflict", "the code is being used by another request; try again")


def _replay(item: dict[str, Any], fingerprint: str) -> Claim:
    if not hmac.compare_digest(item.get("used_by", ""), fingerprint):
        raise DomainError("conflict", "this code was already used for another request")
    if "result" not in item:
        raise DomainError("conflict", "this code is being confirmed by another request; retry")
    return Claim(
        item["code_id"],
        item["purpose"],
        item["phone"],
        item.get("subject"),
        token=item.get("token", ""),
        replay=json.loads(item["result"]),
    )


def _try_use(item: dict[str, Any], mac: str, fingerprint: str, now: int) -> Claim | None:
    token = secrets.token_hex(16)
    try:
        client("dynamodb").update_item(
            TableName=tables.VERIFICATION_CODES.name(),
            Key={"code_id": {"S": item["code_id"]}},
            UpdateExpression="SET used_at = :now, used_by = :fp, #token = :token",
            ConditionExpression=(
                "code_mac = :mac AND attempts < max_attempts AND expires_at > :now "
                "AND attribute_not_exists(used_at)"
            ),
            ExpressionAttributeNames={"#token": "token"},
            ExpressionAttributeValues=dynamo.to_item(
                {":now": now, ":fp": fingerprint, ":token": token, ":mac": mac}
            ),
        )
    except ClientError as exc:
        if dynamo.condition_failed(exc):
            return None
        raise
    return Claim(item["code_id"], item["purpose"], item["phone"], item.get("subject"), token)


def _count_wrong_try(item: dict[str, Any]) -> int | None:
    """Count one wrong try atomically; tries left, or None if the code changed meanwhile."""
    try:
        answer = client("dynamodb").update_item(
            TableName=tables.VERIFICATION_CODES.name(),
            Key={"code_id": {"S": item["code_id"]}},
            UpdateExpression="ADD attempts :one",
            ConditionExpression=(
                "code_mac = :mac AND attempts < max_attempts AND attribute_not_exists(used_at)"
            ),
            ExpressionAttributeValues=dynamo.to_item({":one": 1, ":mac": item["code_mac"]}),
            ReturnValues="ALL_NEW",
        )
    except ClientError as exc:
        if dynamo.condition_failed(exc):
            return None
        raise
    new = dynamo.from_item(answer["Attributes"])
    return max(0, int(new["max_attempts"]) - int(new["attempts"]))


def complete(claim: Claim, answer: dict[str, Any]) -> None:
    """Keep the answer given for `claim`, for retries of the same request."""
    try:
        client("dynamodb").update_item(
            TableName=tables.VERIFICATION_CODES.name(),
            Key={"code_id": {"S": claim.code_id}},
            UpdateExpression="SET #result = :result",
            ConditionExpression="#token = :token",
            ExpressionAttributeNames={"#result": "result", "#token": "token"},
            ExpressionAttributeValues=dynamo.to_item(
                {":result": json.dumps(answer), ":token": claim.token}
            ),
        )
    except ClientError as exc:
        # Replaced by a new request meanwhile: the old answer has no one left to serve.
        if not dynamo.condition_failed(exc):
            raise


def release(claim: Claim) -> None:
    """Make a used code usable again: the request that used it failed for a transient reason."""
    try:
        client("dynamodb").update_item(
            TableName=tables.VERIFICATION_CODES.name(),
            Key={"code_id": {"S": claim.code_id}},
            UpdateExpression="REMOVE used_at, used_by, #token",
            ConditionExpression="#token = :token",
            ExpressionAttributeNames={"#token": "token"},
            ExpressionAttributeValues={":token": {"S": claim.token}},
        )
    except ClientError as exc:
        if not dynamo.condition_failed(exc):
            raise
