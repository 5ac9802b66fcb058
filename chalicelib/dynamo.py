"""DynamoDB access patterns shared by the domain modules: concurrent BatchGetItem with retries,
and telling a write refused by its condition from a real failure."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from chalicelib.aws import client
from chalicelib.tables import TableSpec

BATCH_GET_MAX = 100  # DynamoDB's own limit per BatchGetItem
MAX_WORKERS = 16
MAX_RETRIES = 8

_ser = TypeSerializer()
_de = TypeDeserializer()


class CallCounter:
    """Counts DynamoDB calls made by one lookup (the benchmark and tests read it).

    Chunks run in threads, so the counts are kept under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.unprocessed_retries = 0

    def call(self) -> None:
        with self._lock:
            self.calls += 1

    def retry(self) -> None:
        with self._lock:
            self.unprocessed_retries += 1


def condition_failed(exc: ClientError) -> bool:
    """Whether a single-item write was refused because its ConditionExpression did not hold
    (the expected outcome of a lost race or a stale version, not an error)."""
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def to_item(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in data.items()}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


def _get_chunk(
    request_items: dict[str, dict[str, Any]], counter: CallCounter
) -> dict[str, list[dict[str, Any]]]:
    pending = request_items
    found: dict[str, list[dict[str, Any]]] = {}
    for attempt in range(MAX_RETRIES + 1):
        counter.call()
        answer = client("dynamodb").batch_get_item(RequestItems=pending)
        for table, items in answer.get("Responses", {}).items():
            found.setdefault(table, []).extend(items)
        pending = answer.get("UnprocessedKeys") or {}
        if not pending:
            return found
        counter.retry()
        # Full jitter backoff: spreads the retries of concurrent chunks.
        time.sleep(random.uniform(0, min(1.0, 0.025 * 2**attempt)))
    raise RuntimeError("BatchGetItem: keys still unprocessed after retries")


def batch_get_many(
    wanted: dict[TableSpec, Iterable[str]],
    *,
    counter: CallCounter | None = None,
    projections: dict[TableSpec, str] | None = None,
    names: dict[str, str] | None = None,
    consistent: bool = False,
) -> dict[TableSpec, dict[str, dict[str, Any]]]:
    """Fetch items of several tables by hash key: 100 keys per call whatever their table
    (one BatchGetItem may span tables), chunks issued concurrently, unprocessed keys retried.
    `consistent` asks for strongly consistent reads (what a GetItem before a write needs).

    Returns {table: {hash key value: item (plain Python values)}} for the items that exist.
    """
    counter = counter if counter is not None else CallCounter()
    projections = projections or {}
    pairs: list[tuple[TableSpec, str]] = [
        (spec, key) for spec, keys in wanted.items() for key in dict.fromkeys(keys)
    ]
    chunks: list[dict[str, dict[str, Any]]] = []
    for start in range(0, len(pairs), BATCH_GET_MAX):
        request: dict[str, dict[str, Any]] = {}
        for spec, key in pairs[start : start + BATCH_GET_MAX]:
            entry = request.setdefault(spec.name(), {"Keys": []})
            if consistent:
                entry["ConsistentRead"] = True
            entry["Keys"].append({spec.hash_key: {"S": key}})
            if spec in projections:
                entry["ProjectionExpression"] = projections[spec]
                if names:  # for attribute names DynamoDB reserves (e.g. "current")
                    entry["ExpressionAttributeNames"] = names
        chunks.append(request)
    if len(chunks) <= 1:
        results = [_get_chunk(c, counter) for c in chunks]
    else:
        with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(chunks))) as pool:
            results = list(pool.map(lambda c: _get_chunk(c, counter), chunks))
    out: dict[TableSpec, dict[str, dict[str, Any]]] = {spec: {} for spec in wanted}
    by_name = {spec.name(): spec for spec in wanted}
    for result in results:
        for table, items in result.items():
            spec = by_name[table]
            for raw in items:
                item = from_item(raw)
                out[spec][item[spec.hash_key]] = item
    return out


def batch_get(
    spec: TableSpec,
    key_values: Iterable[str],
    *,
    counter: CallCounter | None = None,
    projection: str | None = None,
    names: dict[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Fetch items of one table by hash key (see `batch_get_many`)."""
    projections = {spec: projection} if projection else None
    return batch_get_many(
        {spec: key_values}, counter=counter, projections=projections, names=names
    )[spec]


BATCH_WRITE_MAX = 25  # DynamoDB's own limit per BatchWriteItem


def batch_write(requests: Iterable[tuple[TableSpec, dict[str, Any]]]) -> int:
    """Puts and deletes across tables, 25 per BatchWriteItem (one call may span tables),
    unprocessed ones retried. Each request is ("put", item) or ("delete", key) in plain Python
    values, keyed by its table. Returns the number of calls made."""
    pending = [
        {spec.name(): [{"PutRequest": {"Item": to_item(body["put"])}}]}
        if "put" in body
        else {spec.name(): [{"DeleteRequest": {"Key": to_item(body["delete"])}}]}
        for spec, body in requests
    ]
    calls = 0
    for start in range(0, len(pending), BATCH_WRITE_MAX):
        chunk: dict[str, list[dict[str, Any]]] = {}
        for one in pending[start : start + BATCH_WRITE_MAX]:
            for table, items in one.items():
                chunk.setdefault(table, []).extend(items)
        for attempt in range(MAX_RETRIES + 1):
            calls += 1
            chunk = (
                client("dynamodb").batch_write_item(RequestItems=chunk).get("UnprocessedItems")
                or {}
            )
            if not chunk:
                break
            time.sleep(random.uniform(0, min(1.0, 0.025 * 2**attempt)))
        else:
            raise RuntimeError("BatchWriteItem: items still unprocessed after retries")
    return calls
