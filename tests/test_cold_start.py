"""A function's cold start imports app.py and only the path it runs: `import app` alone loads
none of the domain modules, nor boto3, lxml or phonenumbers (see docs/benchmarks.md, Cold start)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

#: Each check runs a fresh interpreter: a process of its own.
pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
LAZY = ["boto3", "lxml", "phonenumbers", "chalicelib.accounts", "chalicelib.presence",
        "chalicelib.live", "chalicelib.api.xmlrpc", "chalicelib.api.account_api",
        "chalicelib.api.presence_lookup", "chalicelib.api.idempotency", "chalicelib.web",
        "jinja2"]  # fmt: skip


def loaded_after(code: str) -> list[str]:
    """Which of LAZY a fresh interpreter has imported after running `code`."""
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps([m for m in {LAZY!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_app_loads_no_domain_module():
    assert loaded_after("import app") == []


def test_sip_auth_loads_neither_xml_nor_notify_bodies():
    loaded = loaded_after("import app\nfrom chalicelib.api import sip_auth")
    assert "lxml" not in loaded and "chalicelib.api.xmlrpc" not in loaded
    assert "chalicelib.presence" not in loaded
