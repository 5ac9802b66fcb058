"""The presence core does no I/O and keeps no clock: none of its modules imports asyncio,
sockets, threads or time, and importing it loads none of them."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.conftest import ROOT

CORE = sorted((ROOT / "sip_edge" / "presence").glob("*.py")) + [ROOT / "sip_edge" / "dialog.py"]
FORBIDDEN = {"asyncio", "socket", "selectors", "threading", "concurrent", "time", "ssl"}


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_no_module_of_the_core_imports_io_or_a_clock(path):
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN


@pytest.mark.integration  # a fresh interpreter: a process of its own
def test_importing_the_core_loads_no_event_loop():
    code = (
        "import sys; import sip_edge.presence.core; "
        "print(sorted(m for m in ('asyncio', 'socket', 'threading') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "asyncio" not in out.stdout, out.stdout
