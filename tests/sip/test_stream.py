"""Stream parser: arbitrary splits, pipelining, keep-alives, mandatory Content-Length, limits."""

from __future__ import annotations

import pytest

from sip_edge.sip.headers import Headers
from sip_edge.sip.message import Request, error_response, make_response
from sip_edge.sip.parser import KeepAlive, ParserLimits, StreamParser, parse_datagram
from sip_edge.sip.status import ParseError
from tests.conftest import INTEROP

SUB = (INTEROP / "sip" / "subscribe-initial-tcp-deflate.raw").read_bytes()
UNSUB = (INTEROP / "sip" / "subscribe-unsubscribe-tcp-digest.raw").read_bytes()


def options(body: bytes = b"", *, extra: str = "", length: int | None = None) -> bytes:
    n = len(body) if length is None else length
    return (
        "OPTIONS sip:rls@example.org SIP/2.0\r\n"
        "Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK-1\r\n"
        "From: <sip:a@example.org>;tag=1\r\nTo: <sip:rls@example.org>\r\n"
        f"Call-ID: c1\r\nCSeq: 1 OPTIONS\r\n{extra}Content-Length: {n}\r\n\r\n"
    ).encode() + body


def test_every_split_point_of_two_pipelined_messages():
    stream = SUB + b"\r\n\r\n" + UNSUB
    for cut in range(len(stream) + 1):
        parser = StreamParser()
        events = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
        kinds = [type(e).__name__ for e in events]
        assert kinds == ["Request", "KeepAlive", "Request"], cut
        assert events[0].body == parse_datagram(SUB).body
        assert events[2].call_id == "BjBfXqj6Xs" and events[2].cseq.seq == 22
        assert parser.buffered == 0


def test_many_messages_in_one_chunk():
    chunk = b"".join(options(str(i).encode() * i) for i in range(1, 6))
    events = StreamParser().feed(chunk)
    assert [e.body for e in events] == [str(i).encode() * i for i in range(1, 6)]


def test_keepalives():
    parser = StreamParser()
    assert parser.feed(b"\r\n\r\n") == [KeepAlive(b"\r\n")]
    assert parser.feed(b"\r\n") == []  # a pong, or half a ping: nothing yet
    assert parser.feed(b"\r\n") == [KeepAlive(b"\r\n")]
    assert parser.feed(b"\r\n") == []
    events = parser.feed(options())  # a lone CRLF before a start line is ignored (RFC 3261 7.5)
    assert len(events) == 1 and isinstance(events[0], Request)
    assert parse_datagram(b"\r\n\r\n") == KeepAlive(b"")
    assert parse_datagram(b"\r\n") == KeepAlive(b"")


def test_missing_content_length_on_a_stream():
    raw = options().replace(b"Content-Length: 0\r\n", b"")
    with pytest.raises(ParseError) as info:
        StreamParser().feed(raw)
    assert info.value.status == 400 and "Content-Length" in info.value.reason
    answer = error_response(info.value)
    assert answer.status == 400 and answer.headers.get("Call-ID") == "c1"
    assert isinstance(parse_datagram(raw), Request)  # fine on UDP


def test_error_is_sticky_and_keeps_preceding_events():
    parser = StreamParser()
    with pytest.raises(ParseError) as info:
        parser.feed(options() + b"GARBAGE\r\n\r\n")
    assert len(info.value.preceding) == 1
    with pytest.raises(ParseError):
        parser.feed(options())


def test_long_line_is_refused_before_it_is_buffered():
    limits = ParserLimits(max_line_length=100, max_header_bytes=10_000)
    parser = StreamParser(limits)
    parser.feed(b"OPTIONS sip:a@b SIP/2.0\r\nX: ")
    with pytest.raises(ParseError) as info:
        for _ in range(20):
            parser.feed(b"x" * 10)
    assert info.value.status == 513
    assert parser.buffered <= 160


def test_unterminated_head_is_refused_at_the_limit():
    limits = ParserLimits(max_header_bytes=1000)
    parser = StreamParser(limits)
    with pytest.raises(ParseError) as info:
        for _ in range(100):
            parser.feed(b"X-Filler: 0123456789\r\n")
    assert info.value.status == 513
    assert parser.buffered <= 1100


def test_too_many_headers():
    extra = "".join(f"X-H{i}: v\r\n" for i in range(10))
    with pytest.raises(ParseError) as info:
        StreamParser(ParserLimits(max_headers=12)).feed(options(extra=extra))
    assert info.value.status == 513
    assert error_response(info.value) is not None


def test_body_too_large_is_refused_on_its_content_length():
    parser = StreamParser(ParserLimits(max_body_size=1000))
    with pytest.raises(ParseError) as info:
        parser.feed(options(length=10**6))
    assert info.value.status == 413
    assert error_response(info.value).status == 413
    with pytest.raises(ParseError) as info:
        parse_datagram(options(b"x" * 1001), ParserLimits(max_body_size=1000))
    assert info.value.status == 413


def test_message_too_large():
    limits = ParserLimits(max_message_size=400)
    with pytest.raises(ParseError) as info:
        StreamParser(limits).feed(options(b"x" * 300))
    assert info.value.status == 513


def test_huge_content_length_digits():
    with pytest.raises(ParseError) as info:
        StreamParser().feed(
            options().replace(b"Content-Length: 0", b"Content-Length: " + b"9" * 5000)
        )
    assert info.value.status == 400


def test_udp_content_length_rules():
    raw = options(b"hello")
    assert parse_datagram(raw + b"trailing junk").body == b"hello"  # RFC 3261 18.3: truncate
    with pytest.raises(ParseError) as info:
        parse_datagram(raw[:-2])
    assert info.value.status == 400
    no_length = raw.replace(b"Content-Length: 5\r\n", b"")
    assert parse_datagram(no_length).body == b"hello"


def test_header_injection_is_refused_by_the_serializer():
    h = Headers()
    with pytest.raises(ValueError):
        h.add("Subject", "x\r\nVia: evil")
    with pytest.raises(ValueError):
        h.add("Bad Name", "x")


def test_compact_forms_and_multimap():
    raw = (
        b"SUBSCRIBE sip:rls@example.org SIP/2.0\r\n"
        b"v: SIP/2.0/UDP h;branch=z9hG4bKa, SIP/2.0/UDP h2;branch=z9hG4bKb\r\n"
        b"f: <sip:a@x>;tag=1\r\nt: sip:rls@example.org\r\ni: c\r\nCSeq: 2 SUBSCRIBE\r\n"
        b"o: presence;id=7\r\nk: eventlist, path\r\nk: gruu\r\nm: <sip:a@h>\r\n"
        b"c: application/resource-lists+xml\r\ne: deflate\r\nu: presence\r\nl: 0\r\n\r\n"
    )
    msg = parse_datagram(raw)
    names = [n for n, _ in msg.headers]
    assert names[:6] == ["Via", "From", "To", "Call-ID", "CSeq", "Event"]
    assert [v.branch for v in msg.via] == ["z9hG4bKa", "z9hG4bKb"]
    assert msg.event.package == "presence" and msg.event.id == "7"
    assert msg.supported == ["eventlist", "path", "gruu"]
    assert msg.headers.get_all("Supported") == ["eventlist, path", "gruu"]
    assert msg.headers.get_list("supported") == ["eventlist", "path", "gruu"]
    assert msg.headers.get("ALLOW-EVENTS") == "presence"
    out = msg.to_bytes()
    assert b"\r\nVia: " in out and b"\r\nContent-Length: 0\r\n\r\n" in out
    assert parse_datagram(out).to_bytes() == out


def test_response_round_trip_and_serializer_length():
    req = parse_datagram(options())
    resp = make_response(req, 200, headers=[("Content-Type", "text/plain")], body=b"hi")
    data = resp.to_bytes()
    assert data.startswith(b"SIP/2.0 200 OK\r\n") and data.endswith(b"Content-Length: 2\r\n\r\nhi")
    back = parse_datagram(data)
    assert back.body == b"hi" and back.to_bytes() == data
    req.headers.set("Content-Length", "999")
    assert b"Content-Length: 0\r\n" in req.to_bytes()
