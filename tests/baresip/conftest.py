"""Fixtures giving tests real baresip UAs: skipped without baresip, failing under CI."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.baresip.client import Baresip, missing_requirement

UaFactory = Callable[..., Baresip]


def require_baresip() -> None:
    """Skip naming the Debian package outside CI; fail under CI=true."""
    missing = missing_requirement()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)


@pytest.fixture
def baresip_factory(tmp_path: Path) -> Iterator[UaFactory]:
    """make(user, ...) -> a started Baresip; every UA still running is quit at teardown."""
    require_baresip()
    uas: list[Baresip] = []

    def make(user: str, **kwargs: object) -> Baresip:
        ua = Baresip(tmp_path / f"baresip-{user}-{len(uas)}", user, **kwargs)  # type: ignore[arg-type]
        uas.append(ua)
        return ua

    yield make
    for ua in uas:
        ua.quit()
