"""`python -m bench chaos [--seconds=300]`: the chaos run (`testkit.chaos`) at full length,
against a moto server of its own; prints its table (docs/benchmarks.md). The test suite runs a
short version (tests/faults/test_chaos.py)."""

from __future__ import annotations

import os
from pathlib import Path

from testkit.chaos import run_chaos
from testkit.env import TEST_ENV
from testkit.ports import free_port


def run(argv: list[str]) -> None:
    import tempfile

    from moto.server import ThreadedMotoServer

    seconds = next((float(a.split("=")[1]) for a in argv if a.startswith("--seconds=")), 300.0)
    for k, v in TEST_ENV.items():
        os.environ.setdefault(k, v)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            report = run_chaos(f"http://127.0.0.1:{port}", Path(tmp), seconds=seconds)
    finally:
        server.stop()
    print(report.table())
