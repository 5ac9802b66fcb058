"""Discovery budgets: how many numbers not seen before each account may learn the status of.

One item per account holds a token bucket (`DISCOVERY_BUDGET` tokens, `DISCOVERY_REFILL_PER_DAY`
back per day) and the numbers it was already answered about, as 4-byte HMACs keyed per account
(insertion order, at most `DISCOVERY_KNOWN_MAX`, oldest forgotten). Asking again about a known
number is free; each new number takes a token; numbers past the budget are deferred, never
answered falsely. One request costs one consistent read, plus one conditional write when it
takes tokens (see docs/scale.md); every way of asking (REST, SUBSCRIBE) goes through `charge`.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from chalicelib import clock, dynamo, settings, tables
from chalicelib.aws import client
from chalicelib.observability import logger, metrics

DAY = 86400
HASH_BYTES = 4  # per account: a new number collides with a known one with p ~ known / 2**32
MILLI = 1000  # tokens are stored in thousandths, so that refill keeps fractions exactly
#: Items live this long after their last write (an idle account's budget is full long before).
RETENTION = 400 * DAY
_CAS_TRIES = 8


@dataclass(frozen=True)
class Charge:
    """The outcome of one request: which numbers may be answered now, which must wait."""

    allowed: frozenset[str]
    deferred: list[str] = field(default_factory=list)  # in request order
    retry_after: int = 0  # seconds until the deferred numbers fit in the bucket
    tokens: float = 0.0  # left after this request
    charged: int = 0  # tokens this request took


@dataclass
class Bucket:
    """One account's bucket as read (`exists` False: never charged, so full)."""

    tokens_milli: int
    at: int
    known: list[bytes]
    version: int
    exists: bool


def _number_hash(aor: str, e164: str) -> bytes:
    key = settings.get().phone_hash_key.encode()
    message = f"discovery\x00{aor.lower()}\x00{e164}".encode()
    return hmac.new(key, message, hashlib.sha256).digest()[:HASH_BYTES]


def _rate_milli_per_second() -> float:
    return settings.get().discovery_refill_per_day * MILLI / DAY


def _capacity_milli() -> int:
    return settings.get().discovery_budget * MILLI


def _read(aor: str) -> Bucket:
    raw = client("dynamodb").get_item(
        TableName=tables.DISCOVERY_BUDGETS.name(), Key={"aor": {"S": aor}}, ConsistentRead=True
    )
    return state_of(dynamo.from_item(raw["Item"]) if "Item" in raw else None)


def state_of(item: dict[str, Any] | None) -> Bucket:
    """A bucket from its item (plain values), read consistently; None: never charged yet."""
    now = clock.now_int()
    if item is None:
        return Bucket(_capacity_milli(), now, [], 0, False)
    blob = bytes(item.get("known", b"") or b"")
    known = [blob[i : i + HASH_BYTES] for i in range(0, len(blob), HASH_BYTES)]
    return Bucket(int(item["tokens_milli"]), int(item["at"]), known, int(item["version"]), True)


def _refilled(state: Bucket, now: int) -> int:
    """Tokens after refilling since the last write; a grant above the capacity is kept."""
    capacity = _capacity_milli()
    if state.tokens_milli >= capacity:
        return state.tokens_milli
    gained = int(max(0, now - state.at) * _rate_milli_per_second())
    return min(capacity, state.tokens_milli + gained)


def _write(aor: str, state: Bucket, tokens_milli: int, known: list[bytes], now: int) -> bool:
    """Store the new state if nobody wrote since `state` was read; False if someone did."""
    limit = settings.get().discovery_known_max
    known = known[-limit:] if limit > 0 else []
    item = {
        "aor": aor,
        "tokens_milli": tokens_milli,
        "at": now,
        "known": b"".join(known),
        "version": state.version + 1,
        "expires_at": now + RETENTION,
    }
    if state.exists:
        condition: dict[str, Any] = {
            "ConditionExpression": "version = :v",
            "ExpressionAttributeValues": {":v": {"N": str(state.version)}},
        }
    else:
        condition = {"ConditionExpression": "attribute_not_exists(aor)"}
    try:
        client("dynamodb").put_item(
            TableName=tables.DISCOVERY_BUDGETS.name(), Item=dynamo.to_item(item), **condition
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        return False
    return True


def _retry_after(missing: int, tokens_milli: int) -> int:
    """Seconds until `missing` more tokens (at most a full bucket) are there."""
    rate = _rate_milli_per_second()
    wanted = min(missing, settings.get().discovery_budget) * MILLI - max(0, tokens_milli)
    if wanted <= 0:
        return 1
    return max(1, math.ceil(wanted / rate)) if rate > 0 else DAY


def charge(aor: str, numbers: Iterable[str], read: Bucket | None = None) -> Charge:
    """Take one token per number (E.164) the account was never answered about, in order, while
    tokens last; the rest are deferred. Known numbers are always allowed, and free. `read` is
    the bucket as the caller just read it (`state_of`), used for the first try."""
    wanted = list(dict.fromkeys(numbers))
    if not wanted:
        return Charge(frozenset())
    hashes = {n: _number_hash(aor, n) for n in wanted}
    for attempt in range(_CAS_TRIES):
        now = clock.now_int()
        state = read if read is not None and attempt == 0 else _read(aor)
        tokens = _refilled(state, now)
        known = set(state.known)
        allowed: set[str] = set()
        deferred: list[str] = []
        new: list[bytes] = []
        for number in wanted:
            h = hashes[number]
            if h in known:
                allowed.add(number)
            elif tokens >= MILLI:
                tokens -= MILLI
                known.add(h)
                new.append(h)
                allowed.add(number)
            else:
                deferred.append(number)
        if new and not _write(aor, state, tokens, state.known + new, now):
            time.sleep(random.uniform(0, 0.005 * 2**attempt))  # a concurrent request won
            continue
        result = Charge(
            frozenset(allowed),
            deferred,
            _retry_after(len(deferred), tokens) if deferred else 0,
            tokens / MILLI,
            len(new),
        )
        if deferred:
            _report_dry(aor, result)
        return result
    # Contention on one account's bucket: answer what is known, defer the rest briefly.
    known = set(_read(aor).known)
    return Charge(
        frozenset(n for n in wanted if hashes[n] in known),
        [n for n in wanted if hashes[n] not in known],
        1,
    )


def _report_dry(aor: str, result: Charge) -> None:
    logger.warning(
        "discovery budget ran dry",
        extra={"aor": aor, "deferred": len(result.deferred), "retry_after": result.retry_after},
    )
    metrics.add_metric(name="DiscoveryBudgetDry", unit="Count", value=1)
    metrics.add_metric(name="DiscoveryDeferred", unit="Count", value=len(result.deferred))


def show(aor: str) -> dict[str, Any]:
    """The account's bucket as the operator sees it (tokens now, numbers known)."""
    state = _read(aor)
    tokens = _refilled(state, clock.now_int())
    return {
        "aor": aor,
        "tokens": round(tokens / MILLI, 3),
        "capacity": settings.get().discovery_budget,
        "refill_per_day": settings.get().discovery_refill_per_day,
        "known_numbers": len(state.known),
        "stored": state.exists,
    }


def grant(aor: str, tokens: int) -> dict[str, Any]:
    """Add `tokens` to the account's bucket (may exceed the capacity; refill stops above it).
    Subscriptions holding deferred numbers pick them up at their next recheck."""
    if tokens <= 0:
        raise ValueError("grant a positive number of tokens")
    for attempt in range(_CAS_TRIES):
        now = clock.now_int()
        state = _read(aor)
        if _write(aor, state, _refilled(state, now) + tokens * MILLI, state.known, now):
            logger.info("discovery budget granted", extra={"aor": aor, "tokens": tokens})
            return show(aor)
        time.sleep(random.uniform(0, 0.005 * 2**attempt))
    raise RuntimeError("the budget kept changing; try again")
