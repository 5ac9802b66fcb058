"""Transport rules: TLS when a certificate is set, rport/received, the connection cap, and
idle or half-sent connections closed."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time

import pytest

from testkit.ports import free_port
from testkit.sip_client import SipClient
from testkit.wait import wait_until
from tests.edge.conftest import DOMAIN, EdgeThread

OPTIONS = (
    "OPTIONS sip:{d} SIP/2.0\r\nVia: SIP/2.0/{t} 10.9.9.9:5070;branch=z9hG4bK{b};rport\r\n"
    "Max-Forwards: 70\r\nFrom: <sip:probe@example.net>;tag=1\r\nTo: <sip:{d}>\r\n"
    "Call-ID: {b}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


def options(transport: str, branch: str) -> bytes:
    return OPTIONS.format(d=DOMAIN, t=transport, b=branch).encode()


@pytest.fixture
def certificate(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


def test_tls_listener_when_a_certificate_is_set(aws, certificate):
    cert, key = certificate
    edge = EdgeThread(sip_tls_cert=cert, sip_tls_key=key, sip_tls_port=free_port())
    try:
        port = edge.running.transports.ports["tls"]
        context = ssl.create_default_context(cafile=cert)
        context.check_hostname = False
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with context.wrap_socket(raw) as tls:
                tls.sendall(options("TLS", "tls1"))
                answer = tls.recv(4096)
        assert answer.startswith(b"SIP/2.0 200 OK")
    finally:
        edge.stop()


def test_received_and_rport_are_stamped(client):
    client.send_raw(options("UDP", "nat1"))
    r = client.response("OPTIONS")
    via = r.headers.get("Via")
    assert "received=127.0.0.1" in via and f"rport={client.port}" in via


def test_connection_cap_and_idle_timeout(aws):
    edge = EdgeThread(sip_max_connections=2, sip_idle_timeout=1.0, sip_partial_timeout=1.0)
    try:
        held = [socket.create_connection(edge.address) for _ in range(2)]
        assert wait_until(lambda: len(edge.running.transports.connections) == 2, 5)
        extra = socket.create_connection(edge.address)
        extra.settimeout(3)
        assert extra.recv(10) == b""  # refused: closed at once
        for s in held:
            s.settimeout(5)
            assert s.recv(10) == b""  # idle: closed by the sweeper
        # A message left half-sent is closed too, and the edge still answers others.
        half = socket.create_connection(edge.address)
        half.sendall(options("TCP", "half")[:40])
        half.settimeout(5)
        assert half.recv(10) == b""
        c = SipClient(edge.address, "tcp")
        c.send_raw(options("TCP", "after"))
        assert c.response("OPTIONS").status == 200
        assert edge.running.transports.stats["refused_connections"] >= 1
    finally:
        edge.stop()


def test_one_source_at_its_cap_while_another_still_connects(aws):
    """SIP_MAX_CONNECTIONS_PER_SOURCE: 127.0.0.2 holds its 3 and is refused a 4th; 127.0.0.3
    still connects and is served; a slot freed is usable again."""
    edge = EdgeThread(sip_max_connections_per_source=3)
    try:
        held = [socket.create_connection(edge.address, source_address=("127.0.0.2", 0))
                for _ in range(3)]  # fmt: skip
        assert wait_until(lambda: len(edge.running.transports.connections) == 3, 5)
        extra = socket.create_connection(edge.address, source_address=("127.0.0.2", 0))
        extra.settimeout(3)
        assert extra.recv(10) == b""  # refused: closed at once
        other = SipClient(edge.address, "tcp", host="127.0.0.3")
        other.send_raw(options("TCP", "other"))
        assert other.response("OPTIONS").status == 200
        other.close()
        held.pop().close()
        assert wait_until(lambda: len(edge.running.transports.connections) <= 2, 5)
        again = SipClient(edge.address, "tcp", host="127.0.0.2")
        again.send_raw(options("TCP", "again"))
        assert again.response("OPTIONS").status == 200
        again.close()
        stats = edge.running.transports.stats
        assert stats["refused_per_source"] == 1
        for s in held:
            s.close()
    finally:
        edge.stop()


def test_keepalives_do_not_hold_a_connection_that_never_spoke(aws):
    """SIP_FIRST_MESSAGE_TIMEOUT: CRLF keep-alives alone do not keep a slot; once a message
    came, they do (the idle timeout applies from then)."""
    edge = EdgeThread(sip_first_message_timeout=1.0)
    try:
        silent = socket.create_connection(edge.address)
        spoke = SipClient(edge.address, "tcp")
        spoke.send_raw(options("TCP", "spoke"))
        assert spoke.response("OPTIONS").status == 200
        silent.settimeout(0.3)
        deadline = time.monotonic() + 3.5
        closed = False
        while time.monotonic() < deadline:
            try:
                silent.sendall(b"\r\n\r\n")  # a keep-alive ping every 0.3 s
                spoke.send_raw(b"\r\n\r\n")
                if silent.recv(10) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
        assert closed
        spoke.send_raw(options("TCP", "still"))
        assert spoke.response("OPTIONS").status == 200
        assert edge.running.transports.stats["closed_silent"] == 1
        silent.close()
        spoke.close()
    finally:
        edge.stop()


def test_oversized_datagram_and_stream_errors_keep_the_edge_up(client, edge):
    body = b"x" * 300000
    head = options("UDP", "big").replace(
        b"Content-Length: 0", f"Content-Length: {len(body)}".encode()
    )
    client.send_raw(head[:60000])  # a truncated datagram: Content-Length beyond its end
    tcp = SipClient(edge.address, "tcp")
    tcp.send_raw(head + body)
    tcp.sock.settimeout(5)
    data = tcp.sock.recv(4096)
    assert data.startswith(b"SIP/2.0 413") or data.startswith(b"SIP/2.0 513")
    truncated = client.response("OPTIONS")
    assert truncated.status == 400 and "shorter" in truncated.headers.get("Warning")
    client.send_raw(options("UDP", "still"))
    assert client.response("OPTIONS").status == 200
