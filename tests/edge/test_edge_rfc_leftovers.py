"""RFC leftovers found by hostile input, over real sockets: REGISTER To scheme (RFC 3261 §10.3),
requests before a TCP framing error still answered (§18.3), server transaction matching by
branch, sent-by and method (§17.2.3)."""

from __future__ import annotations

import socket
import time

from sip_edge.sip.message import Response
from sip_edge.sip.parser import StreamParser
from tests.edge.conftest import DOMAIN
from tests.edge.test_edge_hostile_params import trusted_edge  # noqa: F401 (fixture)

ALICE = f"sip:alice@{DOMAIN}"


def _request(method: str, sent_by: str, branch: str, call_id: str, transport: str = "UDP") -> bytes:
    return (
        f"{method} sip:{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {sent_by};branch={branch};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <{ALICE}>;tag=ft\r\nTo: <{ALICE}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_register_to_must_be_a_sip_uri(client, alice):
    for to in ("<tel:+33611111111>", "<mailto:alice@example.org>", "<http://example.org/>"):
        client.request("REGISTER", f"sip:{DOMAIN}", from_uri=ALICE, to=to)
        r = client.response("REGISTER")
        assert r is not None and r.status == 400, (to, r and r.status)
        assert "To" in r.reason or "To" in (r.headers.get("Warning") or "")


def test_requests_before_a_tcp_framing_error_are_answered(trusted_edge):  # noqa: F811
    sock = socket.create_connection(trusted_edge.address)
    port = sock.getsockname()[1]
    good_options = _request("OPTIONS", f"127.0.0.1:{port}", "z9hG4bKtcp1", "c1", "TCP")
    needs_function = _request("REGISTER", f"127.0.0.1:{port}", "z9hG4bKtcp2", "c2", "TCP")
    broken = b"OPTIONS sip:x SIP/2.0\r\nContent-Length: nope\r\n\r\n"
    sock.sendall(good_options + needs_function + broken)
    sock.settimeout(10)
    parser, answers, closed = StreamParser(), [], False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            closed = True
            break
        try:
            answers += [e for e in parser.feed(chunk) if isinstance(e, Response)]
        except Exception:
            break
    sock.close()
    by_call = {a.call_id: a.status for a in answers}
    assert by_call.get("c1") == 200, by_call
    assert by_call.get("c2") == 200, by_call  # the REGISTER went through the functions
    assert closed, "the connection stays open after a framing error"


def test_same_branch_from_two_sent_by_is_two_transactions(client, alice):
    here = f"127.0.0.1:{client.port}"
    client.send_raw(_request("OPTIONS", here, "z9hG4bKshared", "first"))
    client.send_raw(_request("OPTIONS", "10.1.2.3:5099", "z9hG4bKshared", "second"))
    got = {}
    for _ in range(2):
        r = client.response("OPTIONS", timeout=3)
        assert r is not None, got
        got[r.call_id] = r.status
    assert got == {"first": 200, "second": 200}
