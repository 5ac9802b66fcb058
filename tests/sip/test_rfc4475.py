"""Every RFC 4475 torture message, as MANIFEST.json classifies it, through both parsers."""

from __future__ import annotations

import hashlib
import json

import pytest

from sip_edge.sip.message import Request, Response, error_response
from sip_edge.sip.parser import StreamParser, parse_datagram
from sip_edge.sip.status import ParseError
from sip_edge.sip.uri import parse_uri
from tests.conftest import RFC4475

MANIFEST = json.loads((RFC4475 / "MANIFEST.json").read_text())
ENTRIES = {e["file"]: e for e in MANIFEST["messages"]}
VALID = [f for f, e in ENTRIES.items() if e["label"] == "valid"]
INVALID = [f for f, e in ENTRIES.items() if e["label"] != "valid"]

# Status the parser gives each invalid message (the manifest allows "4xx or drop"; RFC 4475
# names 400 for all of these except badvers, 505).
EXPECTED_STATUS = {f: 400 for f in INVALID} | {"badvers.dat": 505}
# Invalid messages we cannot answer: responses, and insuf/test.dat whose core headers are
# missing or unreadable (the manifest allows dropping them).
NO_ANSWER = {"scalarlg.dat", "bigcode.dat", "insuf.dat", "test.dat"}
# Valid only over UDP: no Content-Length, which RFC 3261 18.3 requires on streams.
UDP_ONLY = {"inv2543.dat"}


def data(name: str) -> bytes:
    raw = (RFC4475 / name).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == ENTRIES[name]["sha256"]
    return raw


def test_manifest_covers_fifty_files():
    assert len(ENTRIES) == 50
    assert len(VALID) == MANIFEST["counts"]["valid"]


@pytest.mark.parametrize("name", VALID)
def test_valid_message_parses_as_datagram(name):
    entry = ENTRIES[name]
    msg = parse_datagram(data(name))
    if entry["kind"] == "request":
        assert isinstance(msg, Request)
        assert msg.method == entry["method"]
    else:
        assert isinstance(msg, Response)
        assert msg.status == entry["status"]
    assert msg.top_via is not None
    assert msg.call_id and msg.cseq.seq >= 0
    again = parse_datagram(msg.to_bytes())
    assert again.to_bytes() == msg.to_bytes()


@pytest.mark.parametrize("name", VALID)
def test_valid_message_over_a_stream(name):
    raw = data(name)
    parser = StreamParser()
    if name in UDP_ONLY:
        with pytest.raises(ParseError) as info:
            parser.feed(raw)
        assert info.value.status == 400
        assert error_response(info.value) is not None
        return
    try:
        events = parser.feed(raw)
    except ParseError as err:
        assert name == "dblreq.dat"
        events = err.preceding
    assert events, name
    assert events[0].to_bytes() == parse_datagram(raw).to_bytes()


@pytest.mark.parametrize("name", INVALID)
def test_invalid_message_is_rejected(name):
    with pytest.raises(ParseError) as info:
        parse_datagram(data(name))
    err = info.value
    assert err.status == EXPECTED_STATUS[name]
    assert err.reason
    answer = error_response(err)
    if name in NO_ANSWER:
        assert answer is None
    else:
        assert answer is not None and answer.status == err.status
        # The broken header goes back as received (RFC 3261 8.2.6.2 copies these fields).
        for name in ("Via", "From", "Call-ID", "CSeq"):
            assert answer.headers.get_all(name)[:1] == err.headers.get_all(name)[:1]
        assert answer.headers.get("To").startswith(err.headers.get("To"))
        assert "tag=" in answer.headers.get("To")
        assert answer.to_bytes().startswith(f"SIP/2.0 {err.status} ".encode())


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_stream_parser_never_crashes(name):
    parser = StreamParser()
    try:
        parser.feed(data(name))
    except ParseError:
        pass


# --- notable facts the RFC points out ---------------------------------------------------------


def test_wsinv_whitespace_and_folding():
    msg = parse_datagram(data("wsinv.dat"))
    assert msg.headers.get("Max-Forwards") == "0068"
    assert msg.cseq.seq == 9 and msg.cseq.method == "INVITE"
    assert [v.branch for v in msg.via] == ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"]
    assert [v.transport for v in msg.via] == ["UDP", "TCP", "UDP"]
    assert msg.to.tag == "1918181833n"
    assert msg.from_.display_name == 'J Rosenberg \\"'
    assert msg.from_.tag == "98asjd8"
    contact = msg.contacts[0]
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert msg.headers.get("Subject") == ""
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert len(msg.body) == 150


def test_intmeth_unusual_characters():
    msg = parse_datagram(data("intmeth.dat"))
    uri = msg.request_uri
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert msg.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert msg.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert msg.from_.param("fromParam''~+*_!.-%") == "работающий"
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def test_escaped_uris_are_kept_byte_exact():
    msg = parse_datagram(data("esc01.dat"))
    assert msg.uri == "sip:sips%3Auser%40example.com@example.net"
    assert msg.request_uri.user_unescaped == "sips:user@example.com"
    assert msg.to.uri.user_unescaped == "user"
    contact = msg.contacts[0].uri
    assert contact.raw == "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31"
    assert contact.params == {"%6c%72": None, "n%61me": "v%61lue%25%34%31"}
    null = parse_datagram(data("escnull.dat"))
    assert null.to.uri.user_unescaped == "null-\x00-null"
    assert [c.uri.user for c in null.contacts] == ["%00", "%00%00"]


def test_esc02_percent_in_method_and_unknown_header():
    msg = parse_datagram(data("esc02.dat"))
    assert msg.method == "RE%47IST%45R"
    assert msg.to.display_name == "%Z%45"
    assert len(msg.contacts) == 2  # C%6Fntact is another header, not Contact
    assert msg.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_semicolon_in_user_part():
    uri = parse_datagram(data("semiuri.dat")).request_uri
    assert uri.user == "user;par=u%40example.net" and uri.host == "example.com"
    assert uri.params == {}


def test_accept_folded_list():
    msg = parse_datagram(data("semiuri.dat"))
    assert [a.mime for a in msg.accept] == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def test_transports_and_long_values():
    msg = parse_datagram(data("transports.dat"))
    assert [v.transport for v in msg.via] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    long = parse_datagram(data("longreq.dat"))
    assert len(long.via) == 34
    assert long.to.uri.port == 6000
    assert len(long.from_.tag) > 150
    assert long.via[-1].received == "192.0.2.5"


def test_unknown_schemes_are_opaque():
    assert parse_datagram(data("unkscm.dat")).request_uri.opaque == "totallyopaquecontent"
    novel = parse_datagram(data("novelsc.dat")).request_uri
    assert novel.scheme == "soap.beep" and novel.opaque == "//192.0.2.103:3002"
    unksm2 = parse_datagram(data("unksm2.dat"))
    assert unksm2.to.uri.scheme == "isbn"  # a registrar answers 400: To must be sip/sips
    assert unksm2.from_.uri.scheme == "http"
    assert unksm2.contacts[0].uri.raw == "name:John_Smith"


def test_application_layer_facts_are_exposed():
    bext = parse_datagram(data("bext01.dat"))
    assert bext.require == ["nothingSupportsThis", "nothingSupportsThisEither"]  # -> 420
    assert bext.headers.get_list("Proxy-Require") == [
        "noProxiesSupportThis",
        "norDoAnyProxiesSupportThis",
    ]
    assert parse_datagram(data("invut.dat")).content_type.mime == "application/unknownformat"
    regaut = parse_datagram(data("regaut01.dat")).authorization()[0]
    assert regaut.scheme == "NoOneKnowsThisScheme" and not regaut.is_digest
    assert parse_datagram(data("zeromf.dat")).headers.get("Max-Forwards") == "0"  # -> 483
    assert parse_datagram(data("sdp01.dat")).accept[0].mime == "text/nobodyknowsthis"  # -> 406
    assert parse_datagram(data("badbranch.dat")).top_via.branch == "z9hG4bK"
    inv = parse_datagram(data("inv2543.dat"))
    assert inv.top_via.branch is None and "Max-Forwards" not in inv.headers


def test_contact_params_outside_angle_brackets_belong_to_the_header():
    c1 = parse_datagram(data("cparam01.dat")).contacts[0]
    assert c1.uri.raw == "sip:+19725552222@gw1.example.net" and c1.params == {"unknownparam": None}
    c2 = parse_datagram(data("cparam02.dat")).contacts[0]
    assert c2.uri.params == {"unknownparam": None} and c2.params == {}
    esc = parse_datagram(data("regescrt.dat")).contacts[0]
    assert esc.uri.headers == (("Route", "%3Csip:sip.example.com%3E"),)


def test_responses_with_odd_reason_phrases():
    assert parse_datagram(data("unreason.dat")).reason.startswith("= 2**3 * 5**2 но")
    assert parse_datagram(data("noreason.dat")).reason == ""
    assert parse_datagram(data("bcast.dat")).via[1].host == "255.255.255.255"


def test_mpart01_binary_body_is_kept():
    msg = parse_datagram(data("mpart01.dat"))
    assert len(msg.body) == 553 and b"\x00" in msg.body
    assert msg.content_type.params["boundary"] == "7a9cbec02ceef655"


def test_dblreq_udp_keeps_the_first_request_only():
    msg = parse_datagram(data("dblreq.dat"))
    assert msg.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412" and msg.body == b""


def test_dblreq_stream_yields_both_requests():
    # The INVITE's Content-Length is 5 octets short, so its tail is garbage on a stream: both
    # requests come out, then the error (the connection must be closed).
    parser = StreamParser()
    with pytest.raises(ParseError) as info:
        parser.feed(data("dblreq.dat"))
    events = info.value.preceding
    assert [e.call_id for e in events] == [
        "dblreq.0ha0isndaksdj99sdfafnl3lk233412",
        "dblreq.0ha0isnda977644900765@192.0.2.15",
    ]
    assert len(events[1].body) == 150
    assert error_response(info.value) is None


def test_clerr_over_a_stream_waits_for_more_data():
    parser = StreamParser()
    assert parser.feed(data("clerr.dat")) == []
    assert parser.buffered > 0


def test_scalar02_expires_would_be_clamped():
    from sip_edge.sip.values import parse_delta_seconds

    assert parse_delta_seconds("1" + "0" * 100) == 2**32 - 1


def test_request_uri_rules():
    with pytest.raises(ParseError):
        parse_uri("<sip:user@example.com>")
    with pytest.raises(ParseError):
        parse_uri("sip:user@example.com; lr")
    assert parse_uri("sip:user@example.com?Route=%3Csip:example.com%3E").headers
