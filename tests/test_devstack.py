"""`make run`'s stack (python -m devstack) as a newcomer uses it: REST, SMS on the console,
the SIP edge, and Ctrl-C stopping everything."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from chalicelib import settings
from testkit.ports import free_port
from testkit.wait import wait_until

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def stack():
    ports = {"MOTO_PORT": free_port(), "API_PORT": free_port(), "SIP_PORT": free_port("udp+tcp")}
    fresh = ("AWS_", "TABLE_", "STAGE", "SIP_", "EDGE_")  # as on a newcomer's machine
    env = {k: v for k, v in os.environ.items() if not k.startswith(fresh)}
    env.update({k: str(v) for k, v in ports.items()})
    env["SIP_TRUSTED_PROXIES"] = "127.0.0.1"  # this test's SIP client skips digest
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack"], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    started = wait_until(
        lambda: proc.poll() is not None or any("Ctrl-C stops everything" in x for x in lines), 60
    )
    assert started and proc.poll() is None, "".join(lines)
    yield ports, lines, proc
    if proc.poll() is None:
        proc.kill()


def post(port: int, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def test_make_run_serves_rest_and_sip_and_stops_on_ctrl_c(stack):
    ports, lines, proc = stack
    api = ports["API_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{api}/v1/health", timeout=10) as answer:
        assert json.loads(answer.read()) == {"status": "ok"}
    assert post(api, "/v1/signup/phone", {"phone": "+33612345678"}) == {
        "expires_in": settings.get().code_ttl_seconds
    }

    def sms_code() -> str | None:
        found = [re.search(r"SMS to \+33612345678: .* (\d{4})", line) for line in lines]
        return next((m.group(1) for m in found if m), None)

    assert wait_until(lambda: sms_code() is not None, 10), "no SMS printed on the console"
    code = sms_code()
    account = post(
        api, "/v1/signup/phone/confirm",
        {"phone": "+33612345678", "code": code, "password": "correct horse"},
    )  # fmt: skip
    assert account["sip_uri"] == "sip:+33612345678@sip.example.org"

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(
            b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKdev\r\n"
            b"Max-Forwards: 70\r\nFrom: <sip:p@example.org>;tag=1\r\nTo: <sip:x@example.org>\r\n"
            b"Call-ID: dev\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            ("127.0.0.1", ports["SIP_PORT"]),
        )
        assert sock.recv(4096).startswith(b"SIP/2.0 200 OK")
        # A SUBSCRIBE needs the functions: the edge's process calls them in the stack's.
        assert b"sip:+33612345678@sip.example.org" in _subscribe(sock, ports["SIP_PORT"])

    edge = _edge_pid(lines)
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("Ctrl-C did not stop the stack within 30 s:\n" + "".join(lines[-40:]))
    assert code == 0, "".join(lines[-60:])  # a service whose stop hung names itself there
    with socket.socket() as probe:  # everything it started is gone with it
        assert probe.connect_ex(("127.0.0.1", api)) != 0
    assert not Path(f"/proc/{edge}").exists(), "the edge's process outlived the stack"


def _edge_pid(lines: list[str]) -> int:
    """The edge's own process, from the line `make run` prints for it."""
    edge = next(line for line in lines if line.startswith("SIP edge"))
    return int(re.search(r"process (\d+)", edge).group(1))


def _subscribe(sock: socket.socket, port: int) -> bytes:
    """SUBSCRIBE to one number (trusted-proxy mode: no digest); the first NOTIFY's body."""
    local = sock.getsockname()[1] if sock.getsockname()[1] else 9
    sock.sendto(
        (
            "SUBSCRIBE sip:+33612345678@sip.example.org SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bKsub;rport\r\nMax-Forwards: 70\r\n"
            "From: <sip:watcher@sip.example.org>;tag=w1\r\n"
            "To: <sip:+33612345678@sip.example.org>\r\n"
            f"Call-ID: devsub\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:watcher@127.0.0.1:{local}>\r\n"
            "Event: presence\r\nAccept: application/pidf+xml\r\nExpires: 60\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode(),
        ("127.0.0.1", port),
    )
    got = [sock.recv(65535) for _ in range(2)]  # the 200 and the NOTIFY, in either order
    assert any(m.startswith(b"SIP/2.0 200") for m in got), got
    notify = next(m for m in got if m.startswith(b"NOTIFY"))
    return notify.split(b"\r\n\r\n", 1)[1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal")
def test_an_edge_never_outlives_a_stack_killed_outright(stack):
    """A stack killed with SIGKILL (no stop of its own) takes its edge's process down too, so
    no edge is left holding the SIP port."""
    _, lines, proc = stack
    edge = _edge_pid(lines)
    proc.kill()
    proc.wait(10)
    assert wait_until(lambda: not Path(f"/proc/{edge}").exists(), 10, interval=0.1)


def test_a_stop_that_hangs_is_named_with_every_threads_stack_and_left_behind(monkeypatch, capfd):
    """Ctrl-C must end the stack even when one service hangs in its stop: that stop is given
    STOP_SECONDS, then named on stderr with every thread's stack, and the rest go on."""
    import devstack.__main__ as devstack_main

    monkeypatch.setattr(devstack_main, "STOP_SECONDS", 0.2)
    release = threading.Event()

    def hung_service_stop() -> None:
        release.wait(10)

    started = time.monotonic()
    assert devstack_main._stopped(hung_service_stop) is False
    assert time.monotonic() - started < 2
    release.set()
    err = capfd.readouterr().err
    assert "stopping " in err and "hung_service_stop: still busy after 0.2 s" in err
    assert "hung_service_stop" in err.split("still busy", 1)[1]  # its stack is in the dump
    assert devstack_main._stopped(lambda: None) is True


def test_make_run_prints_the_provisioning_link_and_each_push(stack):
    ports, lines, proc = stack
    api = ports["API_PORT"]
    printed = [re.search(r"Provisioning link +(\S+)", line) for line in lines]
    link = next(m.group(1) for m in printed if m)
    assert link == f"http://127.0.0.1:{api}/provisioning"
    with urllib.request.urlopen(link, timeout=10) as answer:
        document = answer.read().decode()
    assert f"http://127.0.0.1:{api}/api/" in document
    assert f"sip:127.0.0.1:{ports['SIP_PORT']};transport=tcp" in document
    device = {"pn_provider": "fcm", "pn_param": "1234", "pn_prid": "local-device-token"}
    assert post(api, "/api/account_creation_tokens/send-by-push", device) == {}

    def pushed() -> str | None:
        found = [re.search(r'Push to GCM device local-device-token: \{"token":"(\S+)"\}', line)
                 for line in lines]  # fmt: skip
        return next((m.group(1) for m in found if m), None)

    assert wait_until(lambda: pushed() is not None, 10), (
        "no push printed on the console:\n" + "".join(lines[-20:])
    )
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
