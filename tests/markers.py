"""Which tests are `integration` tests, and the `--offline` run of the others (`make check`).

An integration test needs real sockets, other processes or external tools (SIPp, the Linphone
SDK, baresip, svcrack, chalice's packager, cfn-lint, a moto server). It is one when it lives in
a directory of such tests, uses a fixture that opens sockets or starts processes, or carries a
marker that implies it; a new test there falls in the set by itself. `pytest --offline` runs
every other test, and fails any of them that opens an internet socket or starts a process,
telling it to mark itself `@pytest.mark.integration`: the split cannot silently go stale.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
#: Directories whose tests drive the edge over sockets, real clients or injected faults.
INTEGRATION_DIRS = frozenset({"edge", "faults", "sipp", "linphone", "baresip"})
#: Fixtures that open sockets or start processes (`packaged` runs `chalice package`).
INTEGRATION_FIXTURES = frozenset({"moto_server", "stack", "edge", "packaged"})
#: Markers that imply a real tool or a long run.
INTEGRATION_MARKERS = ("sipp", "linphone", "baresip", "browser", "slow", "integration")
_INET = (socket.AF_INET, socket.AF_INET6)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--offline",
        action="store_true",
        help="run only the tests that need no sockets, processes or external tools "
        "(`make check`); one that tries fails, asking to be marked integration",
    )


def is_integration(item: pytest.Item) -> bool:
    path = Path(str(item.fspath)).resolve()
    where = path.relative_to(TESTS).parts if path.is_relative_to(TESTS) else ()
    return (
        (len(where) > 1 and where[0] in INTEGRATION_DIRS)
        or bool(INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())))
        or any(item.get_closest_marker(name) for name in INTEGRATION_MARKERS)
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    offline, deselected = config.getoption("--offline"), []
    for item in list(items):
        if is_integration(item):
            item.add_marker(pytest.mark.integration)
            if offline:
                deselected.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [i for i in items if i not in set(deselected)]


def _refuse(what: str) -> None:
    pytest.fail(
        f"this test {what}: it is an integration test. Mark it `@pytest.mark.integration` "
        "(or move it beside the tests of its kind) so that `make check` leaves it out.",
        pytrace=True,
    )


class _OfflineSocket(socket.socket):
    def __init__(self, family: Any = -1, *args: Any, **kwargs: Any) -> None:
        if family in _INET or (family == -1 and "fileno" not in kwargs):
            _refuse("opens an internet socket")
        super().__init__(family, *args, **kwargs)


_ORIGINALS: dict[str, Any] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Under --offline, a socket on the network or a child process fails the test (or the
    fixture) that opens it, for the whole run."""
    if not config.getoption("--offline"):
        return

    def popen(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        _refuse(f"starts a process ({args[0] if args else kwargs.get('args')!r})")

    _ORIGINALS.update(socket=socket.socket, popen=subprocess.Popen.__init__)
    socket.socket = _OfflineSocket  # type: ignore[misc]
    subprocess.Popen.__init__ = popen  # type: ignore[method-assign]


def pytest_unconfigure(config: pytest.Config) -> None:
    if _ORIGINALS:
        socket.socket = _ORIGINALS.pop("socket")  # type: ignore[misc]
        subprocess.Popen.__init__ = _ORIGINALS.pop("popen")  # type: ignore[method-assign]
