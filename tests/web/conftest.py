"""Fixtures of the browser tests: Playwright with Debian's chromium, a `make run` stack per
module, and the folder the screenshots go to (see tests/web/browser.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.browser import Browsers, Stack, require_browser, shots_folder, start_stack

#: The tests of a module share one stack, all from 127.0.0.1: the per-address limits on code
#: requests are lifted for it (each test uses numbers of its own), and a number's second SMS
#: may follow its first after a second, not a minute (tests/web/test_security.py shows the
#: limits as they are).
SHARED_STACK = {
    "CODE_REQUESTS_PER_IP_HOURLY": "1000",
    "SMS_PER_IP_DAILY": "1000",
    "SMS_PER_NUMBER_INTERVAL": "1",
}


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    with require_browser()() as p:
        yield p


@pytest.fixture(scope="module")
def stack(playwright: Any) -> Iterator[Stack]:
    started = start_stack(**SHARED_STACK)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shots_folder(tmp_path_factory)


@pytest.fixture
def browsers(playwright: Any, shots: Path) -> Iterator[Browsers]:
    opened = Browsers(playwright, shots)
    yield opened
    opened.close()
