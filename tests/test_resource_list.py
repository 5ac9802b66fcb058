"""Reading resource lists: the captured SUBSCRIBEs, encodings, flattening, and hostile bodies."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from chalicelib.errors import DomainError
from chalicelib.presence import resource_list
from chalicelib.presence.resource_list import ListLimits
from tests.presence_helpers import FIXTURE_ENTRIES, sip_message

NS = "urn:ietf:params:xml:ns:resource-lists"


def doc(*entries: str, inner: str = "") -> bytes:
    body = "".join(f'<entry uri="{e}"/>' for e in entries)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="{NS}">'
        f"<list>{body}{inner}</list></resource-lists>"
    ).encode()


def code_of(body: bytes, encoding: str | None = None, limits: ListLimits | None = None) -> str:
    with pytest.raises(DomainError) as info:
        resource_list.parse(body, encoding, limits)
    return info.value.code


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize(
    "name",
    [
        "subscribe-initial-udp-deflate",
        "subscribe-initial-tcp-deflate",
        "subscribe-initial-udp-plain",
    ],
)
def test_captured_subscribes(name):
    headers, body = sip_message(name)
    parsed = resource_list.parse(body, headers.get("content-encoding"))
    assert list(parsed.entries) == FIXTURE_ENTRIES
    assert (parsed.total, parsed.skipped, parsed.duplicates) == (5, 0, 0)


@pytest.mark.parametrize("name", ["subscribe-refresh-udp", "subscribe-unsubscribe-udp"])
def test_refresh_without_body_is_refused_not_an_empty_list(name):
    headers, body = sip_message(name)
    assert headers["content-encoding"] == "deflate" and body == b""
    assert code_of(body, "deflate") == "list_malformed"


@pytest.mark.parametrize(
    ("encode", "label"),
    [
        (lambda b: b, None),
        (lambda b: b, "identity"),
        (zlib.compress, "deflate"),
        (raw_deflate, "deflate"),
        (gzip.compress, "gzip"),
        (lambda b: b, "deflate"),  # belle-sip may skip compressing a small body
        (zlib.compress, None),  # compressed, header lost
        (zlib.compress, "Deflate"),
    ],
)
def test_encodings(encode, label):
    body = doc(*FIXTURE_ENTRIES)
    assert list(resource_list.parse(encode(body), label).entries) == FIXTURE_ENTRIES


def test_nested_lists_flattened_duplicates_collapsed_strings_kept():
    inner = (
        '<list name="friends"><display-name>Friends</display-name>'
        '<entry uri="sip:b@example.org"><display-name>B</display-name></entry>'
        '<list><entry uri="sip:a@example.org"/><entry uri="SIP:A@example.org"/></list></list>'
        '<entry-ref ref="x"/><external anchor="http://x"/><entry/><entry uri=""/>'
    )
    parsed = resource_list.parse(doc("sip:a@example.org", "tel:+33612345678", inner=inner))
    assert parsed.entries == (
        "sip:a@example.org",
        "tel:+33612345678",
        "sip:b@example.org",
        "SIP:A@example.org",
    )
    assert (parsed.total, parsed.skipped, parsed.duplicates) == (7, 2, 1)


def test_attribute_escapes_are_decoded_once():
    parsed = resource_list.parse(doc("sip:a&amp;b@x;p=&quot;1&quot;", "sip:&#233;&#10;@x"))
    assert parsed.entries == ('sip:a&b@x;p="1"', "sip:é\n@x")


def test_document_without_namespace_and_with_bom():
    body = b'\xef\xbb\xbf<resource-lists><list><entry uri="sip:a@x"/></list></resource-lists>'
    assert resource_list.parse(body).entries == ("sip:a@x",)


def test_empty_list_is_valid():
    assert resource_list.parse(doc()).entries == ()


@pytest.mark.parametrize(
    "body",
    [
        b"not xml",
        b'<list xmlns="urn:ietf:params:xml:ns:rlmi"/>',
        b"<resource-lists><list><entry uri='a'></list></resource-lists>",
        b"<resource-lists><list><entry uri='&undefined;'/></list></resource-lists>",
        doc("sip:a@x")[:-5],
    ],
)
def test_malformed(body):
    assert code_of(body) == "list_malformed"


# --- Hostile lists ---------------------------------------------------------------------------

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
        for i in range(1, 10)
    )
    + b']><resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list>'
    + b'<entry uri="&lol9;"/></list></resource-lists>'
)
XXE = (
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list>'
    b'<entry uri="&x;"/></list></resource-lists>'
)
NETWORK_DTD = (
    b'<?xml version="1.0"?><!DOCTYPE resource-lists SYSTEM "http://127.0.0.1:9/x.dtd">'
    b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"/>'
)


@pytest.mark.parametrize("body", [BILLION_LAUGHS, XXE, NETWORK_DTD])
@pytest.mark.parametrize("encode", [lambda b: (b, None), lambda b: (zlib.compress(b), "deflate")])
def test_dtds_and_entities_are_refused(body, encode):
    data, label = encode(body)
    assert code_of(data, label) == "list_forbidden_xml"


def test_doctype_split_across_read_chunks_is_still_found():
    pad = resource_list.CHUNK - len(b"<resource-lists>") - 4
    body = b"<resource-lists>" + b" " * pad + b"<!DOCTYPE x []>" + b"</resource-lists>"
    assert body.index(b"<!DOCTYPE") < resource_list.CHUNK < body.index(b"<!DOCTYPE") + 9
    assert code_of(body) == "list_forbidden_xml"


@pytest.mark.parametrize("compress", [zlib.compress, raw_deflate, gzip.compress])
def test_zlib_bomb_is_refused_without_inflating_it(compress):
    bomb = compress(b"<resource-lists>" + b" " * (200 * 1024 * 1024))  # 200 MiB -> ~200 KB
    label = "gzip" if compress is gzip.compress else "deflate"
    tracemalloc.start()
    try:
        assert code_of(bomb, label) == "list_too_large"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024


def test_plain_body_over_the_size_limit():
    assert code_of(b" " * (1024 * 1024 + 1)) == "list_too_large"
    assert code_of(doc("sip:a@x"), limits=ListLimits(50, 10)) == "list_too_large"


def test_hundred_thousand_entries_stop_at_the_cap():
    entries = "".join(f'<entry uri="sip:{i}@x"/>' for i in range(100_000))
    body = f'<resource-lists xmlns="{NS}"><list>{entries}</list></resource-lists>'.encode()
    packed = zlib.compress(body)
    assert len(body) > 2 * 1024 * 1024
    # Read as a stream, the list hits the entry cap before the size cap...
    assert code_of(packed, "deflate") == "list_too_many_entries"
    # ...and stops there whatever the size allowed, having inflated only ~5,000 entries.
    tracemalloc.start()
    try:
        assert code_of(packed, "deflate", ListLimits(64 * 1024 * 1024, 5000)) == (
            "list_too_many_entries"
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
    tiny = f'<resource-lists xmlns="{NS}"><list>{"<entry/>" * 100_000}</list></resource-lists>'
    assert code_of(tiny.encode()) == "list_too_many_entries"


@pytest.mark.parametrize(
    "body",
    [
        doc("sip:a@x").replace(b"sip:a", b"sip:\xff"),
        doc("sip:a@x").replace(b"sip:a", b"sip:\xc3"),  # truncated sequence
        doc("sip:a@x").replace(b"sip:a", b"sip:\xed\xa0\x80"),  # UTF-8 encoded surrogate
        "<resource-lists/>".encode("utf-16"),
        b" " * (resource_list.CHUNK - 1) + b"\xc3\xa9" + doc("sip:a@x"),  # é split across chunks
    ],
)
def test_invalid_utf8(body):
    if body.startswith(b" " * 10):
        # A character split across read chunks is fine; the leading spaces are not XML though.
        assert code_of(body) == "list_malformed"
        return
    assert code_of(body) == "list_bad_encoding"
    assert code_of(zlib.compress(body), "deflate") == "list_bad_encoding"


@pytest.mark.parametrize(
    ("body", "label"),
    [
        (b"\x78\x9c garbage", "deflate"),
        (zlib.compress(doc("sip:a@x"))[:-6], "deflate"),
        (doc("sip:a@x"), "br"),
        (doc("sip:a@x"), "deflate, gzip"),
        (b"\x00\x01\x02", "gzip"),
    ],
)
def test_bad_content_encoding(body, label):
    assert code_of(body, label) == "list_bad_encoding"


# --- Entries passed as JSON --------------------------------------------------------------------


def test_from_entries():
    parsed = resource_list.from_entries(["sip:a@x", "sip:a@x", "", 3, "sip:\x00@x", "\ud800"])
    assert parsed.entries == ("sip:a@x",)
    assert (parsed.total, parsed.skipped, parsed.duplicates) == (6, 4, 1)
    with pytest.raises(DomainError) as info:
        resource_list.from_entries(["sip:a@x"] * 5001)
    assert info.value.code == "list_too_many_entries"
    with pytest.raises(DomainError) as info:
        resource_list.from_entries("sip:a@x")
    assert info.value.code == "list_malformed"


# Any XML 1.0 character but surrogates; what a phone can put in an address-book URI.
uri_text = st.text(
    st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters="\x00\ufffe\uffff",
        min_codepoint=0x09,
    ).filter(lambda c: c in "\t\n\r" or ord(c) >= 0x20),
    min_size=1,
    max_size=40,
).filter(lambda s: s.strip())


@settings(max_examples=150, deadline=None)
@given(st.lists(uri_text, max_size=8), st.booleans())
def test_any_uri_round_trips_through_a_list(uris, deflate):
    root = etree.Element(f"{{{NS}}}resource-lists")
    lst = etree.SubElement(root, f"{{{NS}}}list")
    for uri in uris:
        etree.SubElement(lst, f"{{{NS}}}entry", uri=uri)
    body = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    body, label = (zlib.compress(body), "deflate") if deflate else (body, None)
    assert resource_list.parse(body, label).entries == tuple(dict.fromkeys(uris))
