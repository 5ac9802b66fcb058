"""The edge over real UDP/TCP sockets: OPTIONS, digest, REGISTER, and bad input answered."""

from __future__ import annotations

import dataclasses

import pytest

from chalicelib import digest, settings
from sip_edge.edge import Edge
from sip_edge.sip.values import parse_via
from testkit.sip_client import SipClient
from tests.edge.conftest import DOMAIN, PASSWORD

ALICE = f"sip:alice@{DOMAIN}"


def test_options_is_the_health_check(client):
    client.request("OPTIONS", f"sip:{DOMAIN}", from_uri="sip:probe@example.net")
    r = client.response("OPTIONS")
    assert r.status == 200
    assert "SUBSCRIBE" in r.headers.get("Allow")


def test_register_with_digest(client, alice):
    client.request("REGISTER", f"sip:{DOMAIN}", from_uri=ALICE, headers=[("Expires", "600")])
    challenge = client.response("REGISTER")
    assert challenge.status == 401
    algs = [
        v.split("algorithm=")[1].split(",")[0]
        for v in challenge.headers.get_all("WWW-Authenticate")
    ]
    assert algs == ["SHA-256", "MD5"]
    client.authorized(
        "REGISTER",
        f"sip:{DOMAIN}",
        challenge,
        username="alice",
        password=PASSWORD,
        from_uri=ALICE,
        headers=[("Expires", "600")],
    )
    ok = client.response("REGISTER")
    assert ok.status == 200, ok.reason
    contact = ok.headers.get("Contact")
    assert f"127.0.0.1:{client.port}" in contact and "expires=600" in contact


def test_wrong_password_is_challenged_again(client, alice):
    client.request("REGISTER", f"sip:{DOMAIN}", from_uri=ALICE)
    challenge = client.response("REGISTER")
    client.authorized(
        "REGISTER",
        f"sip:{DOMAIN}",
        challenge,
        username="alice",
        password="nope",
        from_uri=ALICE,
        algorithm="MD5",
    )
    assert client.response("REGISTER").status == 401


def test_garbage_gets_400_and_edge_stays_up(client):
    client.send_raw(
        b"SUBSCRIBE sip:rls@example.org SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKx\r\n"
        b"From: <sip:a@example.org>;tag=1\r\nTo: <sip:rls@example.org>\r\nCall-ID: x\r\n"
        b"CSeq: nope SUBSCRIBE\r\nContent-Length: 0\r\n\r\n"
    )
    client.receive(timeout=1)
    assert client.unparseable[0].startswith(b"SIP/2.0 400 Bad Request\r\n")
    assert b"CSeq" in client.unparseable[0]
    client.send_raw(b"\x00\xff garbage")
    client.request("OPTIONS", f"sip:{DOMAIN}", from_uri="sip:probe@example.net")
    assert client.response("OPTIONS").status == 200


def test_tcp_transport(edge, alice):
    c = SipClient(edge.address, "tcp")
    try:
        c.request("OPTIONS", f"sip:{DOMAIN}", from_uri="sip:probe@example.net")
        assert c.response("OPTIONS").status == 200
    finally:
        c.close()


def test_a_replayed_authorization_is_challenged_again(client, alice):
    client.request("REGISTER", f"sip:{DOMAIN}", from_uri=ALICE, headers=[("Expires", "600")])
    challenge = client.response("REGISTER")
    for expected in (200, 401):  # the same nonce, cnonce and nc twice: the second is a replay
        client.authorized(
            "REGISTER", f"sip:{DOMAIN}", challenge, username="alice", password=PASSWORD,
            from_uri=ALICE, headers=[("Expires", "600")],
        )  # fmt: skip
        answer = client.response("REGISTER")
        assert answer.status == expected
    assert "stale=true" in answer.headers.get("WWW-Authenticate")


def test_trusted_upstream_proxy_skips_digest(aws, alice):
    from tests.edge.conftest import EdgeThread

    behind_proxy = EdgeThread(sip_trusted_proxies=("127.0.0.1",))
    try:
        c = SipClient(behind_proxy.address)
        c.request("REGISTER", f"sip:{DOMAIN}", from_uri=ALICE, headers=[("Expires", "600")])
        assert c.response("REGISTER").status == 200  # the proxy authenticated alice already
        c.close()
    finally:
        behind_proxy.stop()


def offered_algorithms(challenge) -> list[str]:
    return [
        digest.parse_params(v)["algorithm"] for v in challenge.headers.get_all("WWW-Authenticate")
    ]


BARESIP_UA = "baresip v1.0.0 (x86_64/linux)"
LINPHONE_UA = "LinphoneAndroid/4.6.14 (Google Pixel 6) LinphoneSDK/5.1.65"


def test_clients_that_read_one_challenge_get_md5_alone_and_the_rest_both(client, alice):
    """RFC 8760 §2.4 order for everyone, except User-Agents known to stop at the first."""
    for agent, expected in (
        (LINPHONE_UA, ["SHA-256", "MD5"]),
        (None, ["SHA-256", "MD5"]),
        (BARESIP_UA, ["MD5"]),
        ("BareSIP v2.0.0", ["MD5"]),
    ):
        ua = [("User-Agent", agent)] if agent else []
        client.request("REGISTER", f"sip:{DOMAIN}", from_uri=ALICE, headers=ua)
        challenge = client.response("REGISTER")
        assert challenge.status == 401
        assert offered_algorithms(challenge) == expected, agent
    # MD5 alone, answered with MD5 as baresip does (no algorithm parameter means MD5).
    client.authorized(
        "REGISTER", f"sip:{DOMAIN}", challenge, username="alice", password=PASSWORD,
        from_uri=ALICE, algorithm="MD5", headers=[("User-Agent", BARESIP_UA)],
    )  # fmt: skip
    assert client.response("REGISTER").status == 200
    # And a client claiming to be baresip may still log in with SHA-256: nothing is refused.
    client.request("REGISTER", f"sip:{DOMAIN}", from_uri=ALICE)
    both = client.response("REGISTER")
    client.authorized(
        "REGISTER", f"sip:{DOMAIN}", both, username="alice", password=PASSWORD,
        from_uri=ALICE, headers=[("User-Agent", BARESIP_UA)],
    )  # fmt: skip
    assert client.response("REGISTER").status == 200


def test_digest_offer_follows_the_settings():
    md5_agents = ("baresip",)
    assert digest.offered_to(BARESIP_UA, ("SHA-256", "MD5"), md5_agents) == ("MD5",)
    # An operator who turned MD5 off keeps it off, even for a client that needs it.
    assert digest.offered_to(BARESIP_UA, ("SHA-256",), md5_agents) == ("SHA-256",)
    assert digest.offered_to(BARESIP_UA, ("SHA-256", "MD5"), ()) == ("SHA-256", "MD5")
    assert digest.offered_to("", ("SHA-256", "MD5"), ("",)) == ("SHA-256", "MD5")


def test_no_server_header_unless_set(client, aws, alice):
    from tests.edge.conftest import EdgeThread

    client.request("OPTIONS", f"sip:{DOMAIN}", from_uri="sip:probe@example.net")
    assert client.response("OPTIONS").headers.get("Server") is None
    named = EdgeThread(sip_server_header="acme-edge/2")
    try:
        c = SipClient(named.address)
        c.request("OPTIONS", f"sip:{DOMAIN}", from_uri="sip:probe@example.net")
        assert c.response("OPTIONS").headers.get("Server") == "acme-edge/2"
        c.close()
    finally:
        named.stop()


@pytest.mark.parametrize("host", ["192.0.2.7", "edge.example.org", "[2001:db8::7]"])
def test_the_via_the_edge_builds_is_what_parsing_its_text_gives(host):
    # A NOTIFY's responses are matched by the Via handed to the transaction layer parsed.
    cfg = dataclasses.replace(settings.get(), sip_advertised_host=host)
    edge = Edge(functions=None, cfg=cfg)  # type: ignore[arg-type]
    edge.ports = {"udp": 5070, "tcp": 5071}
    for transport in ("udp", "tcp"):
        via = edge.via(transport)
        assert parse_via(via.raw) == [via]
        assert via.branch and via.branch.startswith("z9hG4bK")
