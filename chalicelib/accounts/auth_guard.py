"""Password-guessing limits, shared by every way of proving an account: REST Basic and Digest,
SIP digest (the `sip_auth` function) and XML-RPC methods that check an HA1.

Failed proofs are counted in DynamoDB (`RateLimits`, with TTL), so every edge task and Lambda
sees the same counts, in fixed windows that start at the first failure:

- per account and source address: past `AUTH_PAIR_FAILURES` in `AUTH_PAIR_WINDOW`, that pair is
  refused without a check until the window ends;
- per source address, any accounts (credential stuffing, SIP scanners): `AUTH_SOURCE_FAILURES`
  in `AUTH_SOURCE_WINDOW`, the same for all that address's attempts;
- per account, any addresses: past `AUTH_ACCOUNT_FAILURES` in `AUTH_ACCOUNT_WINDOW`, only
  addresses or SIP instances that proved the account within `AUTH_KNOWN_DAYS` may still try,
  so the owner's phone keeps working while the account is under attack.

Counters are keyed by the account *named*, existing or not, so an unknown username is answered
exactly like a known one. Keys are HMACs: the table holds no address or username in clear.
A check costs one BatchGetItem (four small items); a failure three UpdateItems; a success one
PutItem at most once a day per address (see docs/scale.md).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from chalicelib import clock, dynamo, settings, tables
from chalicelib.aws import client
from chalicelib.errors import DomainError
from chalicelib.observability import logger, metrics

DAY = 86400
T = TypeVar("T")


@dataclass(frozen=True)
class Attempt:
    """Who is being proven, and from where: `source` is the client address (None when unknown),
    `instance` the SIP +sip.instance of the device, when it sent one."""

    aor: str
    source: str | None = None
    instance: str | None = None


def _hash(*parts: str) -> str:
    key = settings.get().code_hash_key.encode()
    return hmac.new(key, "\x00".join(parts).encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class _Buckets:
    pair: str | None
    source: str | None
    account: str
    known: str

    @classmethod
    def of(cls, attempt: Attempt) -> _Buckets:
        aor = attempt.aor.lower()
        src = attempt.source
        return cls(
            pair=f"authfail:pair:{_hash(aor, src)}" if src else None,
            source=f"authfail:src:{_hash(src)}" if src else None,
            account=f"authfail:acct:{_hash(aor)}",
            known=f"authok:{_hash(aor)}",
        )


def _devices(attempt: Attempt) -> list[str]:
    """The keys under which a successful proof makes this client known to the account."""
    out = []
    if attempt.source:
        out.append("a:" + _hash(attempt.source))
    if attempt.instance:
        out.append("i:" + _hash(attempt.instance))
    return out


def _read(buckets: _Buckets) -> dict[str, dict[str, Any]]:
    keys = [b for b in (buckets.pair, buckets.source, buckets.account, buckets.known) if b]
    answer = client("dynamodb").batch_get_item(
        RequestItems={
            tables.RATE_LIMITS.name(): {
                "Keys": [{"bucket": {"S": k}} for k in keys],
                "ConsistentRead": True,
            }
        }
    )
    items = answer.get("Responses", {}).get(tables.RATE_LIMITS.name(), [])
    # Four small keys are never left unprocessed but under throttling; then count them unseen.
    return {i["bucket"]: i for i in (dynamo.from_item(raw) for raw in items)}


def _live_count(item: dict[str, Any] | None, window: int, now: int) -> tuple[int, int]:
    """(failures in the current window, seconds until it ends)."""
    if not item or int(item.get("start", 0)) <= now - window:
        return 0, 0
    return int(item.get("n", 0)), int(item["start"]) + window - now


def _is_known(item: dict[str, Any] | None, attempt: Attempt, now: int) -> bool:
    seen = (item or {}).get("seen", {})
    horizon = now - settings.get().auth_known_days * DAY
    return any(int(seen.get(d, 0)) > horizon for d in _devices(attempt))


def _blocked_for(attempt: Attempt, state: dict[str, dict[str, Any]], now: int) -> int:
    """Seconds the attempt must wait (0: it may be checked)."""
    s = settings.get()
    b = _Buckets.of(attempt)
    waits = []
    if b.pair:
        n, left = _live_count(state.get(b.pair), s.auth_pair_window, now)
        if n >= s.auth_pair_failures:
            waits.append(left)
    if b.source:
        n, left = _live_count(state.get(b.source), s.auth_source_window, now)
        if n >= s.auth_source_failures:
            waits.append(left)
    n, left = _live_count(state.get(b.account), s.auth_account_window, now)
    if n >= s.auth_account_failures and not _is_known(state.get(b.known), attempt, now):
        waits.append(left)
    return max(waits, default=0)


def blocked_error(retry_after: int) -> DomainError:
    # The same words whichever limit and whether the account exists: nothing to learn from it.
    return DomainError(
        "auth_blocked",
        "too many failed sign-ins; try again later",
        headers={"Retry-After": str(max(1, retry_after))},
    )


def guarded(attempt: Attempt, check: Callable[[], T | None]) -> T | None:
    """Run `check` (the password or digest check: a truthy proof, or None for a failure) unless
    the attempt is blocked, then count its outcome. Raises `auth_blocked` (HTTP 429, SIP 403,
    with Retry-After) without calling `check` when a limit is reached."""
    now = clock.now_int()
    buckets = _Buckets.of(attempt)
    state = _read(buckets)
    wait = _blocked_for(attempt, state, now)
    if wait:
        logger.warning(
            "sign-in refused: too many failures",
            extra={"aor": attempt.aor, "source": attempt.source, "retry_after": wait},
        )
        metrics.add_metric(name="AuthBlocked", unit="Count", value=1)
        raise blocked_error(wait)
    proof = check()
    if proof:
        _succeeded(attempt, buckets, state, now)
    else:
        _failed(buckets, now)
    return proof


def _failed(buckets: _Buckets, now: int) -> None:
    s = settings.get()
    metrics.add_metric(name="AuthFailures", unit="Count", value=1)
    if buckets.pair:
        _count(buckets.pair, s.auth_pair_window, now)
    if buckets.source:
        _count(buckets.source, s.auth_source_window, now)
    _count(buckets.account, s.auth_account_window, now)


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _count(bucket: str, window: int, now: int) -> None:
    """One more failure in the bucket's window, or the first of a new window."""
    table = tables.RATE_LIMITS.name()
    key = {"bucket": {"S": bucket}}
    values = {":cutoff": {"N": str(now - window)}}
    for _ in range(3):
        try:
            client("dynamodb").update_item(
                TableName=table,
                Key=key,
                UpdateExpression="ADD n :one",
                ConditionExpression="attribute_exists(n) AND #s > :cutoff",
                ExpressionAttributeNames={"#s": "start"},
                ExpressionAttributeValues={**values, ":one": {"N": "1"}},
            )
            return
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
        try:  # no window, or an ended one: start a new one (unless another request just did)
            client("dynamodb").put_item(
                TableName=table,
                Item=dynamo.to_item(
                    {"bucket": bucket, "n": 1, "start": now, "expires_at": now + window}
                ),
                ConditionExpression="attribute_not_exists(n) OR #s <= :cutoff",
                ExpressionAttributeNames={"#s": "start"},
                ExpressionAttributeValues=values,
            )
            return
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise


def _succeeded(
    attempt: Attempt, buckets: _Buckets, state: dict[str, dict[str, Any]], now: int
) -> None:
    s = settings.get()
    if buckets.pair and buckets.pair in state:
        # The owner got it right: the mistyped tries before do not count against them.
        client("dynamodb").delete_item(
            TableName=tables.RATE_LIMITS.name(), Key={"bucket": {"S": buckets.pair}}
        )
    known = state.get(buckets.known) or {}
    seen = {k: int(v) for k, v in known.get("seen", {}).items()}
    devices = _devices(attempt)
    # Written at most once a day per device: the hot path (every REGISTER) stays read-only.
    if not devices or all(seen.get(d, 0) > now - DAY for d in devices):
        return
    horizon = now - s.auth_known_days * DAY
    seen.update(dict.fromkeys(devices, now))
    newest = sorted(((t, d) for d, t in seen.items() if t > horizon), reverse=True)
    kept = {d: t for t, d in newest[: s.auth_known_max]}
    client("dynamodb").put_item(
        TableName=tables.RATE_LIMITS.name(),
        Item=dynamo.to_item(
            {"bucket": buckets.known, "seen": kept, "expires_at": now + s.auth_known_days * DAY}
        ),
    )
