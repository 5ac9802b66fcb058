"""Every RFC 4475 torture message sent to the running edge over UDP: it answers what the RFC
expects (or drops what it may drop), and stays up."""

from __future__ import annotations

import json
import re
import socket

import pytest

from tests.conftest import RFC4475

MANIFEST = json.loads((RFC4475 / "MANIFEST.json").read_text())["messages"]


def _expectation(entry: dict) -> str:
    exp = entry["expectation"]
    return exp["udp"] if isinstance(exp, dict) else exp


def _allowed(status: int, expectation: str) -> bool:
    codes = re.findall(r"\b(\dxx|\d{3})\b", expectation)
    return any(c == str(status) or (c.endswith("xx") and c[0] == str(status)[0]) for c in codes)


@pytest.fixture(scope="module")
def torture_edge():
    from moto import mock_aws

    from chalicelib import tables
    from chalicelib.aws import client
    from tests.conftest import reset_caches
    from tests.edge.conftest import EdgeThread

    reset_caches()
    with mock_aws():
        reset_caches()
        tables.create_all(client("dynamodb"))
        edge = EdgeThread()
        yield edge
        edge.stop()
    reset_caches()


@pytest.mark.parametrize("entry", MANIFEST, ids=[m["file"] for m in MANIFEST])
def test_torture_message(torture_edge, entry):
    expectation = _expectation(entry)
    data = (RFC4475 / entry["file"]).read_bytes()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        # A message that must be answered may wait for the functions (moto) on a busy machine;
        # one that may be dropped gets a short wait.
        may_drop = "or drop" in expectation or "no response" in expectation
        sock.settimeout(0.6 if may_drop else 5)
        sock.sendto(data, torture_edge.address)
        try:
            answer = sock.recv(65536)
        except TimeoutError:
            answer = b""
        if entry["file"] == "dblreq.dat":
            pass  # two requests in one datagram: the first is answered, the rest ignored
        elif "no response at all" in expectation:
            assert answer == b"", answer[:80]
        elif not answer:
            assert "or drop" in expectation, "dropped a message that needs an answer"
        else:
            status = int(answer.split(b" ", 2)[1])
            assert _allowed(status, expectation), (status, expectation)
        # Whatever came before, the edge still answers.
        probe = (
            "OPTIONS sip:example.org SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKp"
            f"{entry['file'].replace('.', '')}\r\nMax-Forwards: 70\r\n"
            "From: <sip:p@example.org>;tag=1\r\nTo: <sip:example.org>\r\nCall-ID: probe\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        sock.settimeout(5)
        sock.sendto(probe.encode(), torture_edge.address)
        while True:
            reply = sock.recv(65536)
            if b"CSeq: 1 OPTIONS" in reply:
                break
        assert reply.startswith(b"SIP/2.0 200 ")
