"""No reflection: what an unverified UDP source gets back, retransmissions included, is at most
3x what it sent (docs/security.md: the amplification table), per request type, over real sockets.

Each request is the smallest the parser takes (the attacker's best ratio) and asks for
`received`/`rport` in the Via, which the answer grows by. Every probe runs from a socket of
its own, all at once, and everything that comes back within 2.2 s counts: an INVITE server
transaction would have retransmitted its 405 at 0.5 s and 1.5 s.
"""

from __future__ import annotations

import secrets
import socket
import time

import pytest

from tests.edge.conftest import DOMAIN, EdgeThread, make_account

LIMIT = 3.0
WINDOW = 2.2


def minimal(method: str, *extra: str, uri: str = f"sip:{DOMAIN}", to_tag: str = "") -> bytes:
    tag = f";tag={to_tag}" if to_tag else ""
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP h;branch=z9hG4bK{secrets.token_hex(2)};rport",
        f"From: <sip:a@{DOMAIN}>;tag=1",
        f"To: <sip:a@{DOMAIN}>{tag}",
        f"Call-ID: {secrets.token_hex(1)}",
        f"CSeq: 1 {method}",
        *extra,
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


def stale_auth(method: str, uri: str = f"sip:{DOMAIN}") -> str:
    """Credentials with a nonce this edge never issued to this source (a replay elsewhere)."""
    nonce = f"{int(time.time()) - 10:x}.00000000.{'0' * 32}"
    return (
        f'Authorization: Digest username="a", realm="{DOMAIN}", nonce="{nonce}", uri="{uri}", '
        f'response="{"0" * 64}", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="c"'
    )


PROBES: dict[str, bytes] = {
    "INVITE (405, once)": minimal("INVITE"),
    "MESSAGE (405)": minimal("MESSAGE"),
    "NOTIFY out of dialog (405)": minimal("NOTIFY"),
    "BYE (481)": minimal("BYE"),
    "CANCEL (481)": minimal("CANCEL"),
    "unknown method (501)": minimal("FROB"),
    "ACK (nothing)": minimal("ACK"),
    "OPTIONS (200)": minimal("OPTIONS"),
    "REGISTER (401)": minimal("REGISTER"),
    "REGISTER, foreign nonce (401 stale)": minimal("REGISTER", stale_auth("REGISTER")),
    "SUBSCRIBE (401)": minimal("SUBSCRIBE", "Event: presence"),
    "SUBSCRIBE in dialog, foreign nonce (481)": minimal(
        "SUBSCRIBE", "Event: presence", stale_auth("SUBSCRIBE"), to_tag="x"
    ),
    "PUBLISH (401)": minimal("PUBLISH", "Event: presence"),
    "malformed CSeq (400)": minimal("OPTIONS").replace(b"CSeq: 1 OPTIONS", b"CSeq: x OPTIONS"),
    "stray response (nothing)": (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@example.org>;tag=1"
        b"\r\nTo: <sip:a@example.org>\r\nCall-ID: c\r\nCSeq: 1 NOTIFY\r\n\r\n"
    ),
    "CRLF keep-alive (nothing)": b"\r\n\r\n",
}


def measure(address: tuple[str, int], probes: dict[str, bytes]) -> dict[str, tuple[int, int, int]]:
    """{probe: (bytes in, bytes out, datagrams out)} with every probe in flight at once."""
    socks = {}
    for name, data in probes.items():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        s.sendto(data, address)
        socks[name] = s
    received = {name: [0, 0] for name in probes}
    deadline = time.monotonic() + WINDOW
    while time.monotonic() < deadline:
        idle = True
        for name, s in socks.items():
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            received[name][0] += len(data)
            received[name][1] += 1
            idle = False
        if idle:  # the window is real time: everything within it counts, retransmissions too
            time.sleep(0.01)
    for s in socks.values():
        s.close()
    return {n: (len(probes[n]), received[n][0], received[n][1]) for n in probes}


def table(results: dict[str, tuple[int, int, int]]) -> str:
    rows = ["| request (unauthenticated, UDP) | bytes in | bytes out | datagrams | ratio |",
            "| --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for name, (sent, got, count) in results.items():
        rows.append(f"| {name} | {sent} | {got} | {count} | {got / sent:.2f} |")
    return "\n".join(rows)


@pytest.fixture
def md5_first_edge(aws):
    """SIPp-style: MD5 offered first; the second challenge is what the limit trims."""
    running = EdgeThread(sip_digest_algorithms=("MD5", "SHA-256"))
    yield running
    running.stop()


def test_no_request_type_is_answered_with_more_than_3x_its_size(edge):
    results = measure(edge.address, PROBES)
    print("\n" + table(results))
    over = {n: round(out / sent, 2) for n, (sent, out, _) in results.items() if out > LIMIT * sent}
    assert not over, table(results)
    # Answered once each, never retransmitted; dropped where nothing is due.
    for name, (_, _, count) in results.items():
        assert count == (0 if "nothing" in name else 1), (name, count)
    assert edge.edge.stats.get("stateless", 0) >= 6


def test_a_small_register_gets_one_challenge_a_large_one_both(edge):
    """The 401 keeps its first (strongest) challenge; the second goes when it would not fit."""
    tiny = minimal("REGISTER").replace(f"@{DOMAIN}>".encode(), b"@b>")
    padding = "User-Agent: " + "x" * 200
    sizes = measure(edge.address, {"tiny": tiny, "large": minimal("REGISTER", padding)})
    assert all(out <= LIMIT * sent for sent, out, _ in sizes.values()), sizes
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.settimeout(3)
        probe.sendto(tiny, edge.address)
        first = probe.recv(65536)
        probe.sendto(minimal("REGISTER", padding), edge.address)
        second = probe.recv(65536)
    finally:
        probe.close()
    assert first.count(b"WWW-Authenticate") == 1 and b"algorithm=SHA-256" in first
    assert second.count(b"WWW-Authenticate") == 2


def test_md5_first_keeps_md5_when_trimmed(md5_first_edge):
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.settimeout(3)
        tiny = minimal("REGISTER").replace(f"@{DOMAIN}>".encode(), b"@b>")
        probe.sendto(tiny, md5_first_edge.address)
        answer = probe.recv(65536)
    finally:
        probe.close()
    assert answer.count(b"WWW-Authenticate") == 1 and b"algorithm=MD5" in answer


def test_register_200_lists_others_only_within_the_budget(edge):
    """Ten bindings of 1 KB each: over UDP the 200 lists this phone's own binding and as many
    others as fit in 3x the REGISTER; over TCP it lists them all."""
    from chalicelib.live import registrar
    from testkit.sip_client import SipClient
    from tests.edge.conftest import PASSWORD

    make_account("alice")
    aor = f"alice@{DOMAIN}"
    pad = ";x=" + "y" * 900
    others = [
        registrar.ContactRequest(uri=f"sip:alice@192.0.2.{i}:5060", params=pad) for i in range(1, 9)
    ]
    registrar.register(aor, others, call_id="other", cseq=1, expires_header=600)
    for transport in ("udp", "tcp"):
        client = SipClient(edge.address, transport=transport)
        try:
            first = client.request("REGISTER", f"sip:{DOMAIN}", from_uri=f"sip:{aor}")
            challenge = client.response("REGISTER")
            assert challenge is not None and challenge.status == 401
            sent = client.authorized("REGISTER", f"sip:{DOMAIN}", challenge, username="alice",
                                     password=PASSWORD, from_uri=f"sip:{aor}",
                                     headers=[("Expires", "600")])  # fmt: skip
            ok = client.response("REGISTER")
            assert ok is not None and ok.status == 200, ok
            contacts = ok.headers.get_all("Contact")
            own = f"sip:{client.host}:{client.port};transport={transport}"
            assert own in contacts[0]
            if transport == "udp":
                assert len(ok.to_bytes()) <= LIMIT * len(sent) and len(contacts) < 9
            else:
                assert len(contacts) == 10  # the 8 others, the UDP one and this
        finally:
            client.close()
    assert first


def test_a_contact_longer_than_the_setting_is_refused(edge):
    from testkit.sip_client import SipClient
    from tests.edge.conftest import PASSWORD

    make_account("bob")
    client = SipClient(edge.address, transport="tcp")
    try:
        uri = f"sip:{DOMAIN}"
        huge = f"<sip:bob@127.0.0.1:5060;x={'y' * 1100}>"
        client.request("REGISTER", uri, from_uri=f"sip:bob@{DOMAIN}")
        challenge = client.response("REGISTER")
        client.authorized("REGISTER", uri, challenge, username="bob", password=PASSWORD,
                          from_uri=f"sip:bob@{DOMAIN}", headers=[("Contact", huge)])  # fmt: skip
        answer = client.response("REGISTER")
        assert answer is not None and answer.status == 400
        assert "1024" in answer.reason
    finally:
        client.close()
