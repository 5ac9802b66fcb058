"""Shared fixtures: moto as the AWS stand-in (in-process, or as a server for subprocesses), the
domain clock, the REST app behind chalice.test.Client, and DynamoDB-like atomicity for moto."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client

from testkit.env import TEST_ENV
from testkit.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
#: Test data kept in the repository (tests/data/README.md says where each piece came from).
DATA = ROOT / "tests" / "data"
INTEROP = DATA / "interop" / "linphone-5.1"
INTEROP_6 = DATA / "interop" / "linphone-6"
RFC4475 = DATA / "conformance" / "rfc4475"

#: `integration` tests and the `--offline` run of the others (`make check`).
pytest_plugins = ["tests.markers"]


def _share_botocore_models() -> None:
    """Every boto3 session of the run reads botocore's JSON models once. Tests reset their
    clients at each test (a new session each time), which would otherwise parse the models
    again: most of a moto test's set-up. The loaders share one cache, read-only as within one
    session in production."""
    import botocore.loaders
    import botocore.session

    shared: dict[Any, Any] = {}
    create = botocore.loaders.create_loader

    def create_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
        loader = create(search_path_string)
        loader._cache = shared
        return loader

    botocore.session.create_loader = create_loader


_share_botocore_models()

for _k, _v in TEST_ENV.items():
    os.environ[_k] = _v
os.environ.pop("AWS_ENDPOINT_URL", None)


@pytest.fixture(autouse=True)
def _real_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts on the real time; `advance_clock` moves the domain clock from there."""
    from chalicelib import clock

    monkeypatch.setattr(clock, "offset", 0.0)


#: A UTC noon: far from midnight, so daily windows are easy to reason about.
NOON = 1_800_014_400


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The domain clock stands still (only `advance_clock` moves it): on a loaded machine a
    second may otherwise pass between a request and the answer a test compares it with."""
    from chalicelib import clock

    monkeypatch.setattr(clock, "time", type("FrozenTime", (), {"time": staticmethod(lambda: NOON)}))


def advance_clock(seconds: float) -> None:
    """Move the domain clock forward: codes expire, rate windows slide."""
    from chalicelib import clock

    clock.offset += seconds


def reset_caches() -> None:
    from chalicelib import aws, settings

    settings.get.cache_clear()
    aws.reset()


@pytest.fixture
def aws() -> Iterator[None]:
    """In-process moto with every table created; settings and clients fresh."""
    from moto import mock_aws

    from chalicelib.aws import client
    from devstack.moto_local import apply_all, direct

    apply_all()  # as devstack and the benchmarks run moto
    direct(True)  # a test that injected faults turned it off
    reset_caches()
    with mock_aws():
        reset_caches()
        _create_tables(client("dynamodb"))
        yield
    reset_caches()


#: The tables as `create_all` leaves them (empty), by region and table names: each test gets a
#: copy of its own instead of making them again through the API (most of a test's set-up).
_PRISTINE_TABLES: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}


def _create_tables(dynamodb: Any) -> None:
    import copy

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    from chalicelib import tables
    from chalicelib.aws import region

    backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][region()]
    key = (region(), tuple(spec.name() for spec in tables.ALL))
    if key in _PRISTINE_TABLES and not backend.tables:
        backend.tables.update(copy.deepcopy(_PRISTINE_TABLES[key]))
        return
    tables.create_all(dynamodb)
    _PRISTINE_TABLES.setdefault(key, copy.deepcopy(backend.tables))


@pytest.fixture
def api(aws: None) -> Iterator[Client]:
    """The Chalice app behind chalice.test.Client, on in-process moto."""
    from app import app

    with Client(app) as c:
        yield c


@pytest.fixture
def atomic_moto(aws: None) -> Iterator[None]:
    """Serialize moto's DynamoDB operations as DynamoDB itself does per item and transaction.

    moto checks conditions and writes in separate Python steps (and restores a whole table
    copy when a transaction fails), so concurrent threads could interleave inside one
    operation; real DynamoDB never does. The application code still runs concurrently."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    names = ("put_item", "update_item", "delete_item", "get_item", "transact_write_items")
    originals = {name: getattr(DynamoDBBackend, name) for name in names}

    def locked(method: Any) -> Any:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return method(*args, **kwargs)

        return wrapper

    for name, method in originals.items():
        setattr(DynamoDBBackend, name, locked(method))
    try:
        yield
    finally:
        for name, method in originals.items():
            setattr(DynamoDBBackend, name, method)


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto in server mode on a free loopback port, for subprocesses (edge, SIPp tests)."""
    from moto.server import ThreadedMotoServer

    from chalicelib import tables
    from chalicelib.aws import client
    from devstack.moto_local import apply_all

    apply_all()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    reset_caches()
    tables.create_all(client("dynamodb"))
    yield url
    server.stop()
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    reset_caches()


@pytest.fixture
def log_records() -> Iterator[list[str]]:
    """Every record the service's Powertools logger emits during the test, formatted as in
    production (JSON lines)."""
    from chalicelib.observability import logger

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def require_tool(binary: str, package: str) -> str:
    """Path of `binary`; skip naming the Debian package outside CI, fail under CI=true."""
    path = shutil.which(binary)
    if path:
        return path
    message = f"{binary} not found: install the Debian package {package}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
