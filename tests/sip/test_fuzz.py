"""Hypothesis: no input makes the parsers raise anything but ParseError; round trips are stable."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sip_edge.sip.message import Request, Response, error_response
from sip_edge.sip.parser import (
    DEFAULT_LIMITS,
    KeepAlive,
    ParserLimits,
    StreamParser,
    parse_datagram,
)
from sip_edge.sip.status import ParseError
from sip_edge.sip.uri import parse_uri
from sip_edge.sip.values import parse_credentials, parse_name_addr_list, parse_via
from tests.conftest import INTEROP, RFC4475

CORPUS = [p.read_bytes() for p in sorted((INTEROP / "sip").glob("*.raw"))] + [
    p.read_bytes() for p in sorted(RFC4475.glob("*.dat"))
]
SMALL = ParserLimits(max_line_length=300, max_headers=20, max_header_bytes=2000)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_datagram(data: bytes, limits: ParserLimits = DEFAULT_LIMITS) -> None:
    try:
        msg = parse_datagram(data, limits)
    except ParseError as err:
        assert 400 <= err.status <= 599
        answer = error_response(err)
        if answer is not None:
            answer.to_bytes()
        return
    if isinstance(msg, KeepAlive):
        return
    assert isinstance(msg, Request | Response)
    wire = msg.to_bytes()
    again = parse_datagram(wire)
    assert again.to_bytes() == wire


def check_stream(data: bytes, cuts: list[int], limits: ParserLimits = DEFAULT_LIMITS) -> None:
    parser = StreamParser(limits)
    pieces = []
    start = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        pieces.append(data[start:cut])
        start = cut
    pieces.append(data[start:])
    try:
        for piece in pieces:
            for event in parser.feed(piece):
                if not isinstance(event, KeepAlive):
                    event.to_bytes()
    except ParseError:
        pass
    assert parser.buffered <= limits.max_message_size + len(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] = draw(st.sampled_from(b'\x00\r\n \t:;,<>"\\@=%/\xff\xc3a0'))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from([b"\r\n", b" ", b"\r\n ", b";", b",", b'"']))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 20))]
        else:
            end = min(len(data), pos + draw(st.integers(1, 200)))
            data[pos:pos] = data[pos:end]
    return bytes(data)


@FUZZ
@given(st.binary(max_size=3000))
@example(b"\r\n\r\n")
@example(b"SIP/2.0 200\r\n\r\n")
@example(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n")
def test_random_bytes_datagram(data):
    check_datagram(data)


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.integers(0, 4000), max_size=5))
def test_random_bytes_stream(data, cuts):
    check_stream(data, cuts)


NON_UTF8 = (
    b"OPTIONS sip:a@b SIP/2.0\r\nVia:\xffSIP/2.0/UDP h;branch=z9hG4bK1\r\n"
    b"From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n"
)


def test_non_utf8_header_is_echoed_byte_exact_in_the_400():
    try:
        parse_datagram(NON_UTF8)
    except ParseError as err:
        assert err.status == 400
        assert b"Via: \xffSIP/2.0/UDP h;branch=z9hG4bK1\r\n" in error_response(err).to_bytes()
    else:
        raise AssertionError("non-UTF-8 header accepted")


@FUZZ
@given(mutated())
@example(NON_UTF8)
def test_mutated_messages_datagram(data):
    check_datagram(data)
    check_datagram(data, SMALL)


@FUZZ
@given(mutated(), st.lists(st.integers(0, 4000), max_size=6))
def test_mutated_messages_stream(data, cuts):
    check_stream(data, cuts)
    check_stream(data, cuts, SMALL)


@FUZZ
@given(st.text(max_size=300))
def test_value_parsers_only_raise_parse_error(text):
    for parse in (parse_uri, parse_via, parse_name_addr_list, parse_credentials):
        try:
            parse(text)
        except ParseError:
            pass


@FUZZ
@given(st.sampled_from(CORPUS))
def test_round_trip_of_every_valid_corpus_message(data):
    check_datagram(data)


def test_pathological_inputs_stay_fast():
    import time

    nasty = [
        b"OPTIONS sip:" + b"a." * 20000 + b"! SIP/2.0\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nTo: " + b"a " * 3000 + b"\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h" + b";a=b" * 1500 + b"\r\n\r\n",
        b'OPTIONS sip:a@b SIP/2.0\r\nTo: "' + b'\\"' * 3000 + b"\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nContact: " + b"<sip:a@b>," * 700 + b"\r\n\r\n",
    ]
    for data in nasty:
        start = time.perf_counter()
        check_datagram(data)
        assert time.perf_counter() - start < 0.5
