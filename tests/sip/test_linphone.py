"""The real Linphone 5.1 SUBSCRIBEs and the NOTIFYs it accepted, through both parsers."""

from __future__ import annotations

import zlib

import pytest

from sip_edge.sip.message import Request, error_response, make_response
from sip_edge.sip.parser import StreamParser, parse_datagram
from sip_edge.sip.status import ParseError
from tests.conftest import INTEROP

RAW = sorted((INTEROP / "sip").glob("*.raw"))
NO_LENGTH = {"subscribe-refresh-udp.raw", "subscribe-unsubscribe-udp.raw"}


def load(name: str) -> Request:
    msg = parse_datagram((INTEROP / "sip" / name).read_bytes())
    assert isinstance(msg, Request)
    return msg


def test_all_captures_present():
    assert len(RAW) == 8


@pytest.mark.parametrize("path", RAW, ids=lambda p: p.name)
def test_capture_parses_as_datagram_and_stream(path):
    raw = path.read_bytes()
    msg = parse_datagram(raw)
    assert isinstance(msg, Request)
    assert msg.method in ("SUBSCRIBE", "NOTIFY")
    assert msg.cseq.method == msg.method
    if path.name in NO_LENGTH:
        # UDP captures without Content-Length: fine in a datagram, refused on a stream.
        assert "Content-Length" not in msg.headers and msg.body == b""
        with pytest.raises(ParseError) as info:
            StreamParser().feed(raw)
        assert info.value.status == 400
        assert error_response(info.value).status == 400
        return
    events = StreamParser().feed(raw)
    assert len(events) == 1
    assert events[0].body == msg.body
    assert len(msg.body) == int(msg.headers.get("Content-Length"))
    # The serializer reproduces the capture (only the double space of Proxy-Authorization
    # is normalised away).
    assert msg.to_bytes() == raw.replace(b"Proxy-Authorization:  ", b"Proxy-Authorization: ")


@pytest.mark.parametrize("path", RAW, ids=lambda p: p.name)
def test_capture_split_at_every_byte(path):
    raw = path.read_bytes()
    if path.name in NO_LENGTH:
        return
    parser = StreamParser()
    events = []
    for i in range(len(raw)):
        events += parser.feed(raw[i : i + 1])
    assert len(events) == 1 and events[0].body == parse_datagram(raw).body
    assert parser.buffered == 0


def test_initial_subscribe_over_tcp():
    msg = load("subscribe-initial-tcp-deflate.raw")
    assert msg.uri == "sip:rls@example.org"
    assert msg.event.package == "presence" and msg.expires == 3600
    assert msg.content_encoding == ["deflate"]
    assert msg.content_type.mime == "application/resource-lists+xml"
    assert len(msg.body) == 224
    assert b"sip:+33612345678@example.org;user=phone" in zlib.decompress(msg.body)
    assert msg.require == ["recipient-list-subscribe"]
    assert msg.supported == ["eventlist"]
    assert [a.mime for a in msg.accept] == [
        "multipart/related",
        "application/pidf+xml",
        "application/rlmi+xml",
    ]
    assert msg.headers.get_all("Accept") == [
        "multipart/related",
        "application/pidf+xml",
        "application/rlmi+xml",
    ]
    via = msg.top_via
    assert (via.transport, via.host, via.port) == ("TCP", "127.0.0.1", 57694)
    assert via.branch == "z9hG4bK.bTXng~zQx" and via.has_rport and via.rport is None
    assert "alias" in via.params
    contact = msg.contacts[0]
    assert contact.uri.raw == "sip:alice@127.0.0.1:57694;transport=tcp"
    assert contact.uri.params == {"transport": "tcp"}
    assert contact.params["+sip.instance"] == '"<urn:uuid:9304c17d-a875-0000-bd08-3728ef4e9cf9>"'
    assert contact.param("+sip.instance") == "<urn:uuid:9304c17d-a875-0000-bd08-3728ef4e9cf9>"
    assert contact.param("expires") == "3600"
    assert msg.from_.tag == "pWdW70cNn" and msg.to.tag is None
    assert msg.headers.get("Content-Disposition") == "recipient-list"
    (creds,) = msg.authorization(proxy=True)
    assert creds.is_digest
    assert creds.params == {
        "realm": "example.org",
        "nonce": "XPMiJnPn648ibjbb",
        "algorithm": "MD5",
        "username": "alice",
        "uri": "sip:rls@example.org",
        "response": "9be9ffa1800bc75273dc1fadd95176d5",
        "cnonce": "a7O9AYwqmQqMu-fK",
        "nc": "00000001",
        "qop": "auth",
    }
    assert msg.authorization() == []


def test_plain_udp_subscribe_body():
    msg = load("subscribe-initial-udp-plain.raw")
    assert msg.content_encoding == [] and len(msg.body) == 439
    assert msg.body.startswith(b"<?xml")
    assert msg.contacts[0].uri.user is None


def test_refresh_and_unsubscribe():
    refresh = load("subscribe-refresh-udp.raw")
    assert refresh.to.tag == "9PrlYSKA" and refresh.expires == 10
    assert refresh.content_encoding == ["deflate"] and refresh.body == b""
    assert refresh.request_uri.params == {"transport": "udp"}
    unsub = load("subscribe-unsubscribe-tcp-digest.raw")
    assert unsub.expires == 0 and unsub.body == b""
    assert unsub.contacts[0].param("expires") == "0"
    assert unsub.authorization(proxy=True)[0].get("nc") == "00000002"


@pytest.mark.parametrize("name", ["notify-accepted-plain.raw", "notify-accepted-deflate.raw"])
def test_notifies_we_must_produce(name):
    msg = load(name)
    assert msg.event.package == "Presence"
    ct = msg.content_type
    assert ct.mime == "multipart/related"
    assert ct.params["boundary"] == "xYzZy-rls-ref-boundary0"
    assert ct.raw.endswith(";boundary=xYzZy-rls-ref-boundary0")  # Linphone needs it last
    assert ct.params["start"].startswith("<")
    assert msg.headers.get("Subscription-State") == "active;expires=3600"
    body = zlib.decompress(msg.body) if msg.content_encoding == ["deflate"] else msg.body
    assert len(body) == 2050 and body.startswith(b"--xYzZy-rls-ref-boundary0\r\n")


def test_answering_a_subscribe():
    msg = load("subscribe-initial-udp-deflate.raw")
    ok = make_response(msg, 200, headers=[("Expires", "3600"), ("Contact", "<sip:rls@x>")])
    again = parse_datagram(ok.to_bytes())
    assert again.status == 200 and again.reason == "OK"
    assert again.headers.get_all("Via") == msg.headers.get_all("Via")
    assert again.call_id == msg.call_id and again.cseq == msg.cseq
    assert again.from_.raw == msg.from_.raw
    assert again.to.uri.raw == msg.to.uri.raw and again.to.tag
    assert make_response(msg, 200, to_tag="abc").to.tag == "abc"
    assert make_response(msg, 100).to.tag is None
