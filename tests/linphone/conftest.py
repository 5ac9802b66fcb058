"""Fixtures giving tests real Linphone SDK clients: skipped without the SDK, failing under CI."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.linphone.client import LinphoneClient, build_binary, missing_requirement

ClientFactory = Callable[..., LinphoneClient]


def require_linphone() -> Path:
    """The lpclient binary; skip naming the Debian package outside CI, fail under CI=true."""
    require_tool("gcc", "gcc")
    missing = missing_requirement()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    return build_binary()


@pytest.fixture
def linphone_client_factory(tmp_path: Path) -> Iterator[ClientFactory]:
    """make(config={"sip.key": value}) -> a started LinphoneClient; all are closed at teardown."""
    binary = require_linphone()
    clients: list[LinphoneClient] = []

    def make(config: Mapping[str, object] | None = None) -> LinphoneClient:
        client = LinphoneClient(tmp_path / f"linphone-{len(clients)}", config=config, binary=binary)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
