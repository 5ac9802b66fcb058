"""Anti-abuse limits on SMS codes, held in DynamoDB so every Lambda instance shares them.

Per-key limits (a number, a source IP) are sliding-window logs of send times in one item,
rewritten with a version condition (compare-and-swap): exact windows and an exact Retry-After.
The global daily cap is one atomic conditional counter per UTC day. Quota is reserved before an
SMS is sent and released if it could not be sent, so a failed send burns nothing.
"""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from chalicelib import clock, dynamo, settings, tables
from chalicelib.accounts import phone
from chalicelib.aws import client
from chalicelib.digest import keyed_hash
from chalicelib.errors import DomainError, rate_limited

DAY = 86400
HOUR = 3600
_CAS_TRIES = 8


@dataclass(frozen=True)
class Reservation:
    """One unit of quota taken from `bucket`; `token` names it in a log (None for counters)."""

    bucket: str
    token: str | None


def reserve_in_window(
    bucket: str, *, limit: int, window: int, min_interval: int = 0, what: str
) -> Reservation:
    """Take one unit from a sliding window of `window` seconds holding at most `limit` units,
    at least `min_interval` seconds apart; 429 with the exact Retry-After otherwise."""
    table = tables.RATE_LIMITS.name()
    for attempt in range(_CAS_TRIES):
        now = clock.now_int()
        raw = client("dynamodb").get_item(
            TableName=table, Key={"bucket": {"S": bucket}}, ConsistentRead=True
        )
        item = dynamo.from_item(raw["Item"]) if "Item" in raw else {}
        version = int(item.get("version", 0))
        hits = {k: int(v) for k, v in item.get("hits", {}).items() if int(v) > now - window}
        if min_interval and hits:
            latest = max(hits.values())
            if latest > now - min_interval:
                raise rate_limited(
                    f"{what}: wait before asking for another code", latest + min_interval - now
                )
        if len(hits) >= limit:
            raise rate_limited(
                f"{what}: at most {limit} codes per {_span(window)}",
                min(hits.values()) + window - now,
            )
        token = secrets.token_hex(8)
        hits[token] = now
        new_item = {
            "bucket": bucket,
            "hits": hits,
            "version": version + 1,
            "expires_at": now + window,
        }
        condition: dict[str, Any] = (
            {
                "ConditionExpression": "version = :v",
                "ExpressionAttributeValues": {":v": {"N": str(version)}},
            }
            if item
            else {
                "ConditionExpression": "attribute_not_exists(#b)",
                "ExpressionAttributeNames": {"#b": "bucket"},
            }
        )
        try:
            client("dynamodb").put_item(TableName=table, Item=dynamo.to_item(new_item), **condition)
            return Reservation(bucket, token)
        except ClientError as exc:
            if not dynamo.condition_failed(exc):
                raise
            time.sleep(random.uniform(0, 0.005 * 2**attempt))  # another request won the race
    raise rate_limited(f"{what}: too many concurrent requests", 1)


def reserve_in_day(bucket: str, *, limit: int, what: str) -> Reservation:
    """Take one unit from a counter of the current UTC day holding at most `limit` units."""
    now = clock.now_int()
    day_start = now - now % DAY
    try:
        client("dynamodb").update_item(
            TableName=tables.RATE_LIMITS.name(),
            Key={"bucket": {"S": f"{bucket}:{day_start}"}},
            UpdateExpression="ADD n :one SET expires_at = :exp",
            ConditionExpression="attribute_not_exists(n) OR n < :limit",
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":limit": {"N": str(limit)},
                ":exp": {"N": str(day_start + 2 * DAY)},
            },
        )
    except ClientError as exc:
        if not dynamo.condition_failed(exc):
            raise
        raise rate_limited(f"{what}: daily limit reached", day_start + DAY - now) from None
    return Reservation(f"{bucket}:{day_start}", None)


def release(reservation: Reservation) -> None:
    """Give back a unit taken by `reserve_*` (the SMS it paid for was not sent)."""
    if reservation.token is None:
        update = {
            "UpdateExpression": "ADD n :minus",
            "ConditionExpression": "attribute_exists(n) AND n > :zero",
            "ExpressionAttributeValues": {":minus": {"N": "-1"}, ":zero": {"N": "0"}},
        }
    else:
        # Removing the entry and bumping the version keeps concurrent CAS writers correct.
        update = {
            "UpdateExpression": "REMOVE hits.#t ADD version :one",
            "ConditionExpression": "attribute_exists(hits.#t)",
            "ExpressionAttributeNames": {"#t": reservation.token},
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
    try:
        client("dynamodb").update_item(
            TableName=tables.RATE_LIMITS.name(), Key={"bucket": {"S": reservation.bucket}}, **update
        )
    except ClientError as exc:
        if not dynamo.condition_failed(exc):
            raise


def _span(seconds: int) -> str:
    if seconds % DAY == 0:
        return "24 h" if seconds == DAY else f"{seconds // DAY} days"
    if seconds % HOUR == 0:
        return "hour" if seconds == HOUR else f"{seconds // HOUR} h"
    return f"{seconds} s"


def _ip_key(source_ip: str) -> str:
    # Keyed hash: the limits table holds no plain address.
    return keyed_hash(settings.get().code_hash_key, source_ip, length=32)


def window_wait(bucket: str, *, limit: int, window: int) -> int:
    """Seconds until `bucket` (a `reserve_in_window` log) has room again; 0 if it has now."""
    raw = client("dynamodb").get_item(
        TableName=tables.RATE_LIMITS.name(), Key={"bucket": {"S": bucket}}, ConsistentRead=True
    )
    now = clock.now_int()
    item = dynamo.from_item(raw["Item"]) if "Item" in raw else {}
    hits = sorted(int(v) for v in item.get("hits", {}).values() if int(v) > now - window)
    if len(hits) < limit:
        return 0
    return max(1, hits[len(hits) - limit] + window - now)


def _keyed(text: str) -> str:
    return keyed_hash(settings.get().code_hash_key, text, length=32)


def prefix_of(e164: str) -> str:
    """The destination prefix of a number: without its last 4 digits, a block of 10,000
    numbers (SMS pumping walks such blocks of premium or partner-operated numbers)."""
    return e164[:-4]


def failure_bucket(e164: str) -> str:
    """The number's log of wrong code answers, across all its codes (`verification`)."""
    return f"code-failures:{phone.phone_hash(e164)}"


def reserve_sms(
    e164: str, source_ip: str, *, link: bool = False, account: str | None = None
) -> list[Reservation]:
    """Reserve one SMS to `e164` asked from `source_ip` under every limit, or raise 429 (with
    nothing reserved). Order: source IP (hour, day), account (link requests), number
    (interval, then 24 h; link codes from a budget of their own, so that nobody can use up a
    number's recovery SMS by asking to link it), destination prefix, global daily cap."""
    s = settings.get()
    ip = _ip_key(source_ip)
    wanted: list[tuple[str, int, int, int, str]] = [
        (f"ip:{ip}", s.code_requests_per_ip_hourly, HOUR, 0, "source address"),
        (f"ip-day:{ip}", s.sms_per_ip_daily, DAY, 0, "source address"),
    ]
    if account is not None:
        wanted.append(
            (f"link-account:{_keyed(account.lower())}", s.link_requests_per_account_daily, DAY,
             0, "link requests of this account")
        )  # fmt: skip
    number = phone.phone_hash(e164)
    if link:
        wanted.append(
            (f"link-phone:{number}", s.link_sms_per_number_daily, DAY,
             s.sms_per_number_interval, "phone")
        )  # fmt: skip
    else:
        wanted.append(
            (f"phone:{number}", s.sms_per_number_daily, DAY, s.sms_per_number_interval, "phone")
        )
    wanted.append(
        (f"prefix:{_keyed(prefix_of(e164))}", s.sms_per_prefix_daily, DAY, 0, "phone prefix")
    )
    taken: list[Reservation] = []
    try:
        for bucket, limit, window, interval, what in wanted:
            taken.append(
                reserve_in_window(
                    bucket, limit=limit, window=window, min_interval=interval, what=what
                )
            )
        taken.append(reserve_in_day("sms-global", limit=s.sms_global_daily, what="SMS service"))
    except DomainError:
        release_all(taken)
        raise
    return taken


def reserve_call(source_ip: str) -> Reservation:
    """Reserve one call of an XML-RPC method that sends no SMS, asked from `source_ip`; 429
    past `XMLRPC_LOOKUPS_PER_IP_HOURLY`. These methods reveal nothing about accounts; the
    limit keeps them from being a free amplifier of DynamoDB reads."""
    return reserve_in_window(
        f"lookup-ip:{_ip_key(source_ip)}",
        limit=settings.get().xmlrpc_lookups_per_ip_hourly,
        window=HOUR,
        what="source address",
    )


def release_all(reservations: list[Reservation]) -> None:
    for reservation in reversed(reservations):
        release(reservation)
