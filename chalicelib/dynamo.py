"""DynamoDB access patterns shared by the domain modules: concurrent BatchGetItem with retries."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from chalicelib.aws import client
from chalicelib.tables import TableSpec

BATCH_GET_MAX = 100  # DynamoDB's own limit per BatchGetItem
MAX_WORKERS = 16
MAX_RETRIES = 8

_ser = TypeSerializer()
_de = TypeDeserializer()


@dataclass
class CallCounter:
    """Counts DynamoDB calls made by one lookup (the benchmark and tests read it)."""

    calls: int = 0
    unprocessed_retries: int = field(default=0)


def to_item(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in data.items()}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


def _get_chunk(
    table_name: str, keys: list[dict[str, Any]], counter: CallCounter, projection: str | None
) -> list[dict[str, Any]]:
    request: dict[str, Any] = {"Keys": keys}
    if projection:
        request["ProjectionExpression"] = projection
    pending = {table_name: request}
    found: list[dict[str, Any]] = []
    for attempt in range(MAX_RETRIES + 1):
        counter.calls += 1
        answer = client("dynamodb").batch_get_item(RequestItems=pending)
        found.extend(answer.get("Responses", {}).get(table_name, []))
        pending = answer.get("UnprocessedKeys") or {}
        if not pending:
            return found
        counter.unprocessed_retries += 1
        # Full jitter backoff: spreads the retries of concurrent chunks.
        time.sleep(random.uniform(0, min(1.0, 0.025 * 2**attempt)))
    raise RuntimeError(f"BatchGetItem on {table_name}: keys still unprocessed after retries")


def batch_get(
    spec: TableSpec,
    key_values: Iterable[str],
    *,
    counter: CallCounter | None = None,
    projection: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Fetch items by hash key, 100 keys per call, chunks issued concurrently.

    Returns {hash key value: item (plain Python values)} for the items that exist.
    """
    counter = counter if counter is not None else CallCounter()
    unique: Sequence[str] = list(dict.fromkeys(key_values))
    if not unique:
        return {}
    chunks = [
        [{spec.hash_key: {"S": k}} for k in unique[i : i + BATCH_GET_MAX]]
        for i in range(0, len(unique), BATCH_GET_MAX)
    ]
    name = spec.name()
    if len(chunks) == 1:
        results = [_get_chunk(name, chunks[0], counter, projection)]
    else:
        with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(chunks))) as pool:
            results = list(pool.map(lambda c: _get_chunk(name, c, counter, projection), chunks))
    out: dict[str, dict[str, Any]] = {}
    for items in results:
        for raw in items:
            item = from_item(raw)
            out[item[spec.hash_key]] = item
    return out
