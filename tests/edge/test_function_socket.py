"""`make run`'s function calls between two processes: the edge's socket client
(sip_edge.function_socket) against the function host serving app.py (devstack.function_host),
here in one process over a real Unix socket. They must behave as a Lambda invoke does: the
answer or a FunctionError (the phone's 503), the edge's time left handed to the function, the
bulkhead slot held until the answer is in, a stalled or vanished host failing fast."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalicelib import edge_contract, settings
from devstack.function_host import FunctionHost
from sip_edge import functions
from sip_edge.fail_fast import DEADLINE
from sip_edge.function_socket import MAX_FRAME_BYTES, SocketFunctions, frame


@pytest.fixture
def host(aws, tmp_path: Path) -> Iterator[FunctionHost]:
    served = FunctionHost(str(tmp_path / "functions.sock"))
    yield served
    served.stop()


def _cfg(**changes: object) -> settings.Settings:
    return dataclasses.replace(settings.get(), **changes)


def test_a_call_reaches_app_py_s_function_and_brings_its_answer_back(host):
    client = functions.from_settings(_cfg(sip_functions="socket", sip_functions_socket=host.path))
    assert isinstance(client, SocketFunctions)
    payload = {"method": "REGISTER", "realm": "example.org", "params": {}}

    async def twice() -> list[dict]:
        return [await client.call(edge_contract.SIP_AUTH.name, payload) for _ in range(2)]

    assert [a["result"] for a in asyncio.run(twice())] == ["forbidden", "forbidden"]
    assert host.calls == {edge_contract.SIP_AUTH.name: 2}  # one kept connection carried both
    assert client.guard.inflight == 0


def test_an_unknown_function_or_a_failing_one_is_a_function_error(host, monkeypatch):
    import app

    client = SocketFunctions(host.path, 4, _cfg())
    with pytest.raises(functions.FunctionError, match="no function 'nope'"):
        asyncio.run(client.call("nope", {}))

    def broken(event, context):
        raise RuntimeError("boom")

    monkeypatch.setattr(app, "sip_auth", broken)
    with pytest.raises(functions.FunctionError, match="RuntimeError: boom"):
        asyncio.run(client.call(edge_contract.SIP_AUTH.name, {}))
    assert client.guard.inflight == 0


def test_the_function_is_told_how_long_the_edge_still_waits(host, monkeypatch):
    import app

    seen: list[dict] = []
    monkeypatch.setattr(app, "sip_auth", lambda event, context: seen.append(event) or {"ok": 1})
    client = SocketFunctions(host.path, 4, _cfg())

    async def inside_a_request() -> dict:
        DEADLINE.set(time.monotonic() + 1.5)  # as the edge sets it for each SIP request
        return await client.call(edge_contract.SIP_AUTH.name, {"x": 1})

    assert asyncio.run(inside_a_request()) == {"ok": 1}
    assert seen[0]["x"] == 1 and 0 < seen[0][edge_contract.TIME_LEFT] <= 1.5


def test_a_stalled_function_fails_the_call_in_time_and_holds_its_slot_until_it_ends(
    host, monkeypatch
):
    """As an invoke: the request that made the call gives up at its deadline; the call's slot
    in the bulkhead stays taken while the function still runs (a stalled backend cannot pile
    up more work than the bulkhead allows), until the client's own timeout ends it."""
    import app

    release = threading.Event()
    monkeypatch.setattr(app, "sip_auth", lambda event, context: release.wait(10) and {"ok": 1})
    cfg = _cfg(sip_request_deadline=0.3, aws_connect_timeout=0.1)
    client = SocketFunctions(host.path, 1, cfg)

    async def scenario() -> None:
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):  # the edge's deadline cancels the request
            await asyncio.wait_for(client.call(edge_contract.SIP_AUTH.name, {}), 0.2)
        assert time.monotonic() - started < 1
        assert client.guard.inflight == 1  # the function still runs
        with pytest.raises(functions.FunctionError, match="in flight"):
            await client.call(edge_contract.SIP_AUTH.name, {})
        await asyncio.sleep(0.4)  # the client's own timeout ends the call
        assert client.guard.inflight == 0

    asyncio.run(scenario())
    release.set()


def test_a_host_that_is_gone_fails_the_call_at_once(tmp_path):
    client = SocketFunctions(str(tmp_path / "nobody.sock"), 4, _cfg())
    started = time.monotonic()
    with pytest.raises(functions.FunctionError):
        asyncio.run(client.call(edge_contract.SIP_AUTH.name, {}))
    assert time.monotonic() - started < 1
    assert client.guard.inflight == 0


def test_a_host_that_closes_mid_call_fails_the_call_and_the_next_one_reconnects(host):
    client = SocketFunctions(host.path, 4, _cfg())
    payload = {"method": "REGISTER", "realm": "example.org", "params": {}}

    async def scenario() -> None:
        await client.call(edge_contract.SIP_AUTH.name, payload)
        kept = client._idle[-1]
        assert kept.transport is not None
        kept.transport.close()  # as if the host had dropped it
        await asyncio.sleep(0)
        assert (await client.call(edge_contract.SIP_AUTH.name, payload))["result"] == "forbidden"

    asyncio.run(scenario())


def test_the_host_answers_each_frame_of_a_connection_in_order_and_survives_junk(host):
    request = {"function": edge_contract.SIP_AUTH.name,
               "payload": {"method": "REGISTER", "realm": "example.org", "params": {}}}  # fmt: skip
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(host.path)
        data = frame(request) + frame({"function": "sip_auth"}) + frame(request)
        for byte in range(0, len(data), 7):  # frames split anywhere
            sock.sendall(data[byte : byte + 7])
        answers = _read_frames(sock, 3)
    assert answers[0]["answer"]["result"] == "forbidden"
    assert "KeyError" in answers[1]["error"]
    assert answers[2] == answers[0]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:  # a frame too big: closed
        sock.settimeout(5)
        sock.connect(host.path)
        sock.sendall((MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
        assert sock.recv(10) == b""


def _read_frames(sock: socket.socket, count: int) -> list[dict]:
    data, out = b"", []
    while len(out) < count:
        if len(data) >= 4 and len(data) >= 4 + int.from_bytes(data[:4], "big"):
            end = 4 + int.from_bytes(data[:4], "big")
            out.append(json.loads(data[4:end]))
            data = data[end:]
            continue
        chunk = sock.recv(65536)
        assert chunk
        data += chunk
    return out
