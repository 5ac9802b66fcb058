"""The moto patch devstack, the benchmarks and the tests share: Query reads one partition.

If moto itself starts reading one partition, the first test fails (drop the patch); if an
upgrade changes Query so that the patch answers differently or reads more, the others fail."""

from __future__ import annotations

from typing import Any

import pytest
from moto.dynamodb.models.table import Table

from chalicelib import tables
from devstack import moto_local


@pytest.fixture
def watchers(aws) -> Any:
    table = tables.table(tables.WATCHERS)
    with table.batch_writer() as batch:
        for key in range(20):
            for watcher in range(10):
                batch.put_item(
                    Item={"watched": f"p#{key}", "watcher": f"w{watcher:02d}", "uris": ["x"]}
                )
    return table


@pytest.fixture
def items_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many items each call of moto's `all_items` handed to a Query."""
    seen: list[int] = []
    current = Table.all_items

    def counting(self: Table) -> list[Any]:
        items = current(self)
        seen.append(len(items))
        return items

    monkeypatch.setattr(Table, "all_items", counting)
    return seen


QUERIES: list[dict[str, Any]] = [
    {"KeyConditionExpression": "watched = :k", "ExpressionAttributeValues": {":k": "p#3"}},
    {"KeyConditionExpression": "watched = :k AND watcher > :w",
     "ExpressionAttributeValues": {":k": "p#3", ":w": "w04"}, "ScanIndexForward": False},
    {"KeyConditionExpression": "watched = :k AND begins_with(watcher, :w)",
     "ExpressionAttributeValues": {":k": "p#7", ":w": "w0"}, "Limit": 4},
    {"KeyConditionExpression": "watched = :k", "ExpressionAttributeValues": {":k": "nobody"}},
]  # fmt: skip


def _pages(table: Any, query: dict[str, Any]) -> list[list[dict[str, Any]]]:
    pages, kwargs = [], dict(query)
    while True:
        page = table.query(**kwargs)
        pages.append(page["Items"])
        if "LastEvaluatedKey" not in page:
            return pages
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_moto_alone_still_reads_the_whole_table(watchers, items_read, monkeypatch):
    monkeypatch.setattr(Table, "query", moto_local.original("query"))
    watchers.query(**QUERIES[0])
    assert max(items_read) == 200, (
        "moto's Query no longer reads the whole table: drop devstack.moto_local.keyed_queries"
    )


def test_the_patch_reads_one_partition_and_answers_as_moto_does(watchers, items_read, monkeypatch):
    patched = [_pages(watchers, q) for q in QUERIES]
    assert items_read and max(items_read) <= 10
    assert patched[0][0][0]["watcher"] == "w00" and len(patched[2]) == 3  # pages of 4, 4, 2
    monkeypatch.setattr(Table, "query", moto_local.original("query"))
    monkeypatch.setattr(Table, "all_items", moto_local.original("all_items"))
    assert [_pages(watchers, q) for q in QUERIES] == patched


def test_index_queries_are_left_to_moto(aws):
    from chalicelib.live import subscriptions

    subscriptions.save(
        "sub-1", edge_id="edge-a", subscriber="alice@example.org", expires_at=2_000_000_000,
        version=0, dialog={}, entries=[], watched=[],
    )  # fmt: skip
    assert [s["subscription_id"] for s in subscriptions.load_edge("edge-a")] == ["sub-1"]
