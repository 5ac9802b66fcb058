"""moto as the local stack's AWS: in-process for our own code, and on a port for outside tools
(the admin tool, curl, SIPp seeding), one backend behind both; plus the one patch that makes
moto's Query read the partition asked for, as DynamoDB does.

Without the patch, moto answers every base-table Query by sorting the whole table, so a stack
slows down as its tables grow (each list subscription adds 100 watcher items). devstack, the
benchmarks and the tests all apply it through `keyed_queries`; tests/test_moto_local.py fails
when a moto upgrade makes it unnecessary or breaks it.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable
from typing import Any

_local = threading.local()
_originals: dict[str, Callable[..., Any]] = {}


def keyed_queries() -> None:
    """Make moto's base-table Query read the one partition asked for (idempotent)."""
    from moto.dynamodb.models.table import Table

    if _originals:
        return
    all_items, query = Table.all_items, Table.query
    _originals.update(all_items=all_items, query=query)
    signature = inspect.signature(query)

    def partition_items(self: Table) -> list[Any]:
        key = getattr(_local, "partition", None)
        if key is None:
            return all_items(self)
        found = self.items.get(key)
        if found is None:
            return []
        if not self.range_key_attr:
            return [found]
        return sorted(found.values(), key=lambda item: item.range_key)

    def keyed_query(self: Table, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs).arguments
        if bound.get("index_name") or bound.get("hash_key") is None:
            return query(self, *args, **kwargs)
        _local.partition = bound["hash_key"]
        try:
            return query(self, *args, **kwargs)
        finally:
            _local.partition = None

    Table.all_items = partition_items  # type: ignore[method-assign]
    Table.query = keyed_query  # type: ignore[method-assign]


def original(name: str) -> Callable[..., Any]:
    """moto's own `Table.all_items` or `Table.query`, from before the patch."""
    from moto.dynamodb.models.table import Table

    return _originals.get(name) or getattr(Table, name)


def start(host: str, port: int) -> Callable[[], None]:
    """moto in this process for our clients (no HTTP hop) and on host:port for the others."""
    import logging

    from moto import mock_aws
    from moto.server import ThreadedMotoServer

    keyed_queries()
    mock = mock_aws()
    mock.start()  # first: starting it resets the backends the server then shares
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    os.environ.pop("AWS_ENDPOINT_URL", None)  # our own clients go to the in-process backend

    def stop() -> None:
        server.stop()
        mock.stop()

    return stop
