"""Verification codes: send one by SMS within the anti-abuse limits, then check it once.

A code is stored only as HMAC(code key, binding + code), bound to its purpose, its phone number,
its subject (the requested username, or the account linking the number) and what else the
confirming request must name; a wrong one of these is a wrong answer. It lives
`code_ttl_seconds`, dies after `code_max_attempts` wrong tries (410), and each wrong answer also
spends the number's failure budget across codes (`code_failures_per_number`), so guessing stays
bounded per number whatever the number of codes. A pending code belongs to whoever asked for it
first (its owner): another requester cannot replace it until it expires. Consuming it is one
conditional write, so two requests can never both use one code; the answer of the request that
used it is kept with it, so a retry gets the same answer.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import clock, digest, dynamo, settings, tables
from chalicelib.accounts import phone, rate_limits, sms
from chalicelib.aws import client
from chalicelib.errors import DomainError, rate_limited
from chalicelib.observability import logger, metrics, pseudonym

SIGNUP = "signup"
LINK = "link"
PURPOSES = frozenset({SIGNUP, LINK})


#: `consume(subject=ANY)`: the caller does not name the subject; the code's own is used.
ANY: Any = object()


@dataclass(frozen=True)
class Claim:
    """A code this request has just used (or a retry of the request that used it)."""

    code_id: str
    purpose: str
    phone: str  # E.164 the code was sent to
    subject: str | None
    token: str
    replay: dict[str, Any] | None = None  # the stored answer, when this is a retry
    payload: dict[str, str] | None = None  # what `send` kept with the code (gone from the item)


def _key() -> str:
    return settings.get().code_hash_key


def code_id(purpose: str, lookup: str) -> str:
    """Item key: the purpose and a keyed hash of what the confirming request knows (the number
    for sign-up, the account for a link)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}")
    return f"{purpose}:{digest.keyed_hash(_key(), lookup)}"


def _mac(cid: str, e164: str, subject: str | None, binding: str, code: str) -> str:
    # Everything the confirming request must match is in the MAC, not compared beside it: a
    # wrong number, username or algorithm is a wrong answer like a wrong code (one try used),
    # so no field can be probed for free.
    return digest.keyed_hash(_key(), "|".join((cid, e164, subject or "", binding, code)))


def _owner_mac(owner: str) -> str:
    return digest.keyed_hash(_key(), "owner|" + owner)


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


def check_number(e164: str) -> None:
    """403 unless a code may be sent to the number: its country (`SMS_ALLOWED_REGIONS`) and
    its type (`SMS_NUMBER_TYPES`: mobile only by default, so no premium-rate, personal, pager,
    shared-cost or VoIP number is paid for)."""
    s = settings.get()
    region = phone.region_of(e164)
    if region not in s.sms_allowed_regions:
        raise DomainError(
            "region_not_allowed",
            f"phone: SMS cannot be sent to numbers of {region or 'that'} region",
        )
    kind = phone.number_type(e164)
    if kind not in s.sms_number_types:
        raise DomainError(
            "sms_not_allowed", "phone: codes are sent to mobile numbers only, not this one"
        )


def _live(item: dict[str, Any], now: int) -> bool:
    """A code that can still be used: unexpired, unused, tries left."""
    return (
        int(item["expires_at"]) > now
        and "used_at" not in item
        and int(item["attempts"]) < int(item["max_attempts"])
    )


def _failure_budget_wait(e164: str) -> int:
    s = settings.get()
    return rate_limits.window_wait(
        rate_limits.failure_bucket(e164),
        limit=s.code_failures_per_number,
        window=s.code_failure_window,
    )


def _too_many_failures(retry_after: int) -> DomainError:
    return rate_limited(
        "phone: too many wrong codes for this number; no code for it for now", retry_after
    )


def _pending_elsewhere(retry_after: int) -> DomainError:
    return rate_limited(
        "phone: a code asked by another request is pending; ask again once it expires",
        retry_after,
    )


def send(
    purpose: str,
    lookup: str,
    e164: str,
    subject: str | None,
    *,
    source_ip: str,
    owner: str = "",
    authenticated: bool = False,
    binding: str = "",
    payload: dict[str, str] | None = None,
    account: str | None = None,
    deliver: bool = True,
) -> int:
    """Send a new code for (purpose, e164, subject); answer its lifetime.

    `owner` names the requester (its credentials, or what it asked for): a live code of
    another owner is not replaced until it expires, is used or dies (429), unless the request
    is `authenticated` (the account itself asks). `binding` is what the confirming request
    must also name (the assistant's algorithm, or "recover"). `payload` is kept with the code
    for the request that uses it, then deleted. With `deliver=False` everything happens but
    the SMS (a request that must look the same as a real one). Raises 403 (country, type),
    429 (a limit, too many wrong codes, a pending code of another owner) or 503 (SNS: the
    reserved quota is released and the previous code stays valid)."""
    s = settings.get()
    check_number(e164)
    # Limits first: whatever follows may read state about the number.
    reserved = rate_limits.reserve_sms(e164, source_ip, link=purpose == LINK, account=account)
    per_requester, per_number = reserved[:2], reserved[2:]
    cid = code_id(purpose, lookup)
    now = clock.now_int()
    try:
        wait = _failure_budget_wait(e164)
        if wait:
            raise _too_many_failures(wait)
        current = _get(cid)
        if (
            not authenticated
            and current is not None
            and _live(current, now)
            and not hmac.compare_digest(current.get("owner", ""), _owner_mac(owner))
        ):
            raise _pending_elsewhere(int(current["expires_at"]) - now)
    except DomainError:
        # Nothing sent: the number keeps its SMS, the requester pays for asking.
        rate_limits.release_all(per_number)
        raise
    code = new_code()
    item: dict[str, Any] = {
        "code_id": cid,
        "purpose": purpose,
        "phone": e164,
        "code_mac": _mac(cid, e164, subject, binding, code),
        "owner": _owner_mac(owner),
        "attempts": 0,
        "max_attempts": s.code_max_attempts,
        "created_at": now,
        "expires_at": now + s.code_ttl_seconds,
    }
    if subject is not None:
        item["subject"] = subject
    if payload:
        item["payload"] = json.dumps(payload)
    put: dict[str, Any] = {
        "TableName": tables.VERIFICATION_CODES.name(),
        "Item": dynamo.to_item(item),
    }
    if not authenticated:
        # The check above, again, atomically: two first requests racing cannot both win.
        put["ConditionExpression"] = (
            "attribute_not_exists(code_id) OR #owner = :owner OR expires_at <= :now"
            " OR attribute_exists(used_at) OR attempts >= max_attempts"
        )
        put["ExpressionAttributeNames"] = {"#owner": "owner"}
        put["ExpressionAttributeValues"] = dynamo.to_item({":owner": item["owner"], ":now": now})
    # Stored before the SMS leaves: a code that reached a phone always works. If the store
    # fails nothing was sent (a retry is clean); if the send fails the previous code comes back.
    try:
        client("dynamodb").put_item(**put)
    except (ClientError, BotoCoreError) as exc:
        if not (isinstance(exc, ClientError) and dynamo.condition_failed(exc)):
            with contextlib.suppress(ClientError, BotoCoreError):  # best effort: it is failing
                rate_limits.release_all(per_requester + per_number)  # nothing was sent
            raise
        rate_limits.release_all(per_number)
        raise _pending_elsewhere(s.code_ttl_seconds) from None
    if deliver:
        try:
            sms.send_code(e164, code)
        except DomainError:
            _restore(cid, item["code_mac"], current)
            rate_limits.release_all(per_requester + per_number)
            raise
    metrics.add_metric(name="CodesSent", unit=MetricUnit.Count, value=1 if deliver else 0)
    logger.info(
        "code sent" if deliver else "code request recorded, no SMS",
        extra={"purpose": purpose, "phone": pseudonym(e164)},
    )
    return s.code_ttl_seconds


def _restore(cid: str, ours: str, previous: dict[str, Any] | None) -> None:
    """Put back the code our unsent one replaced (or none), unless another request has
    replaced ours meanwhile; best effort, as the send already failed."""
    table = tables.VERIFICATION_CODES.name()
    guard = {
        "ConditionExpression": "code_mac = :ours",
        "ExpressionAttributeValues": {":ours": {"S": ours}},
    }
    try:
        if previous is None:
            client("dynamodb").delete_item(TableName=table, Key={"code_id": {"S": cid}}, **guard)
        else:
            client("dynamodb").put_item(TableName=table, Item=dynamo.to_item(previous), **guard)
    except (ClientError, BotoCoreError) as exc:
        logger.warning("unsent code not rolled back", extra={"reason": type(exc).__name__})


def _get(cid: str) -> dict[str, Any] | None:
    raw = client("dynamodb").get_item(
        TableName=tables.VERIFICATION_CODES.name(), Key={"code_id": {"S": cid}}, ConsistentRead=True
    )
    return dynamo.from_item(raw["Item"]) if "Item" in raw else None


def _failure(purpose: str, reason: str) -> None:
    metrics.add_metric(name="CodeFailures", unit=MetricUnit.Count, value=1)
    logger.info("code refused", extra={"purpose": purpose, "reason": reason})


def _none_pending() -> DomainError:
    return DomainError("code_not_found", "no code is pending: request one first")


def consume(
    purpose: str,
    lookup: str,
    code: object,
    *,
    fingerprint: str,
    e164: str | None = None,
    subject: Any = ANY,
    binding: str = "",
    replay: bool = True,
) -> Claim:
    """Use the pending code of (purpose, lookup). `e164`, `subject` (when not ANY) and
    `binding` are what the confirming request claims the code was sent to and for: any of
    them wrong is a wrong answer. `fingerprint` identifies the request's content: with
    `replay`, a retry with the same code and fingerprint gets `Claim.replay`, a different
    request using a used code gets 409; without it, a used code is gone.

    Every answer costs one try of the code and one of the number's failure budget
    (`CODE_FAILURES_PER_NUMBER` per `CODE_FAILURE_WINDOW`, across codes): past it, 429.
    Raises code_not_found (404: none pending, or used), code_mismatch (400), code_expired
    (410: expired or dead after too many tries), rate_limited (429) or invalid_field (not
    counted as a try)."""
    code = _check_format(code)
    cid = code_id(purpose, lookup)
    for _ in range(3):
        item = _get(cid)
        now = clock.now_int()
        if item is None:
            _failure(purpose, "none pending")
            raise _none_pending()
        if int(item["expires_at"]) <= now:
            _failure(purpose, "expired")
            raise DomainError("code_expired", "the code has expired: request a new one")
        claimed_subject = item.get("subject") if subject is ANY else subject
        mac = _mac(cid, e164 or item["phone"], claimed_subject, binding, code)
        right = hmac.compare_digest(mac, item["code_mac"])
        if "used_at" in item:
            if right and replay:
                return _replay(item, fingerprint)
            _failure(purpose, "used")
            raise _none_pending()
        attempts, limit = int(item["attempts"]), int(item["max_attempts"])
        if attempts >= limit:
            _failure(purpose, "dead")
            raise DomainError("code_expired", "too many wrong codes: request a new one")
        # One unit of the number's failure budget per answer, taken before the answer is
        # known and given back if it was right: concurrent guesses cannot overrun it.
        s = settings.get()
        try:
            slot = rate_limits.reserve_in_window(
                rate_limits.failure_bucket(item["phone"]),
                limit=s.code_failures_per_number,
                window=s.code_failure_window,
                what="phone",
            )
        except DomainError as exc:
            _failure(purpose, "failure budget spent")
            raise _too_many_failures(int(str(exc.headers.get("Retry-After", "60")))) from None
        if right:
            rate_limits.release(slot)
            claim = _try_use(item, mac, fingerprint, now)
            if claim is not None:
                return claim
            continue  # someone else used it, or the last try went meanwhile: look again
        left = _count_wrong_try(item)
        if left is None:
            rate_limits.release(slot)
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
            # The payload (an HA1 waiting for its code) is deleted as the code is used.
            UpdateExpression="SET used_at = :now, used_by = :fp, #token = :token REMOVE payload",
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
    payload = json.loads(item["payload"]) if "payload" in item else None
    return Claim(
        item["code_id"], item["purpose"], item["phone"], item.get("subject"), token, None, payload
    )


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
        if not (isinstance(exc, ClientError) and dynamo.condition_failed(exc)):
            raise


def release(claim: Claim) -> None:
    """Make a used code usable again: the request that used it failed for a transient reason."""
    values: dict[str, Any] = {":token": {"S": claim.token}}
    expression = "REMOVE used_at, used_by, #token"
    if claim.payload:
        expression += " SET payload = :payload"
        values[":payload"] = {"S": json.dumps(claim.payload)}
    try:
        client("dynamodb").update_item(
            TableName=tables.VERIFICATION_CODES.name(),
            Key={"code_id": {"S": claim.code_id}},
            UpdateExpression=expression,
            ConditionExpression="#token = :token",
            ExpressionAttributeNames={"#token": "token"},
            ExpressionAttributeValues=values,
        )
    except ClientError as exc:
        if not (isinstance(exc, ClientError) and dynamo.condition_failed(exc)):
            raise
