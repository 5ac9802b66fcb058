"""Reading request-contained resource lists (RFC 4826 in a SUBSCRIBE, RFC 5367) safely.

A list arrives plain or deflated (RFC 5621; a zlib stream as Linphone sends it, raw RFC 1951 data
or gzip accepted too) and is parsed as a stream: it is inflated, checked as UTF-8, scanned for
DTDs and fed to a hardened lxml pull parser chunk by chunk, so a hostile body (zlib bomb, entity
expansion, external entities, too many entries, invalid UTF-8) is refused with its own error code
after reading at most a little more than the configured limits, whatever its announced size.
"""

from __future__ import annotations

import codecs
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from lxml import etree

from chalicelib import safe_xml, settings
from chalicelib.errors import DomainError

NS = "urn:ietf:params:xml:ns:resource-lists"
_ENTRY = f"{{{NS}}}entry"
_ROOT_NAMES = frozenset({f"{{{NS}}}resource-lists", "resource-lists"})
_ENTRY_NAMES = frozenset({_ENTRY, "entry"})
CHUNK = 64 * 1024
# A URI longer than this is no address-book entry; refusing it bounds what a list can make us echo.
MAX_URI_CHARS = 1024
# Markup that only a DTD can carry: refused before the parser sees it (defence in depth; the
# parser itself also runs with DTD loading, entity resolution and network access off).
_DTD_MARKERS = (b"<!DOCTYPE", b"<!ENTITY")
_MARKER_OVERLAP = max(len(m) for m in _DTD_MARKERS) - 1
# How a plain XML body starts (a raw deflate stream only rarely starts like this by chance).
_XML_START = re.compile(rb"(?:\xef\xbb\xbf)?[ \t\r\n]*<[?!A-Za-z_]")


@dataclass(frozen=True, slots=True)
class ListLimits:
    """Caps applied while reading one list (defaults from settings)."""

    max_inflated_bytes: int
    max_entries: int

    @classmethod
    def from_settings(cls) -> ListLimits:
        cfg = settings.get()
        return cls(cfg.list_max_inflated_bytes, cfg.list_max_entries)


@dataclass(frozen=True, slots=True)
class ResourceList:
    """The entries of a list, flattened from nested `<list>`s, in document order.

    `entries` holds each distinct URI string once (first occurrence wins the position), exactly
    as the subscriber wrote it after XML decoding: these strings are echoed back byte for byte.
    """

    entries: tuple[str, ...]
    total: int  # <entry> elements read, duplicates and unusable ones included
    skipped: int  # <entry> elements without a usable uri attribute

    @property
    def duplicates(self) -> int:
        return self.total - self.skipped - len(self.entries)


def parse(
    body: bytes,
    content_encoding: str | None = None,
    limits: ListLimits | None = None,
) -> ResourceList:
    """Parse a `application/resource-lists+xml` body, raising `DomainError` list_* codes."""
    limits = limits or ListLimits.from_settings()
    if not body:
        # A refresh carries no body; building a full state from "nothing" would wipe the phone.
        raise DomainError("list_malformed", "empty resource list body")
    chunks = _decoded_chunks(body, content_encoding, limits.max_inflated_bytes)
    return _parse_chunks(chunks, limits.max_entries)


def valid_uri(uri: object) -> bool:
    """Whether `uri` can be echoed in an XML attribute: a non-empty string of XML 1.0 chars."""
    if not isinstance(uri, str) or not uri.strip() or len(uri) > MAX_URI_CHARS:
        return False
    for ch in uri:
        o = ord(ch)
        if o < 0x20 and ch not in "\t\n\r":
            return False
        if 0xD800 <= o <= 0xDFFF or o in (0xFFFE, 0xFFFF):
            return False
    return True


def from_entries(uris: object, limits: ListLimits | None = None) -> ResourceList:
    """A `ResourceList` from an already-parsed list (JSON strings), with the same rules."""
    limits = limits or ListLimits.from_settings()
    if not isinstance(uris, list):
        raise DomainError("list_malformed", "entries: expected a list of URI strings")
    if len(uris) > limits.max_entries:
        raise DomainError(
            "list_too_many_entries", f"{len(uris)} entries, at most {limits.max_entries}"
        )
    seen: dict[str, None] = {}
    skipped = 0
    for uri in uris:
        if valid_uri(uri):
            seen.setdefault(uri, None)
        else:
            skipped += 1
    return ResourceList(tuple(seen), len(uris), skipped)


# --- Content decoding ----------------------------------------------------------------------


def _codings(content_encoding: str | None) -> list[str]:
    tokens = [t.strip().lower() for t in (content_encoding or "").split(",")]
    codings = [t for t in tokens if t and t != "identity"]
    if len(codings) > 1 or (codings and codings[0] not in ("deflate", "gzip", "x-gzip")):
        raise DomainError("list_bad_encoding", f"unsupported Content-Encoding {content_encoding!r}")
    return codings


def _looks_like_xml(data: bytes) -> bool:
    return _XML_START.match(data) is not None


def _zlib_header(data: bytes) -> bool:
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


def _decoded_chunks(body: bytes, content_encoding: str | None, limit: int) -> Iterator[bytes]:
    codings = _codings(content_encoding)
    if not codings and _zlib_header(body) and not _looks_like_xml(body):
        # Deflated but unlabelled (a lost header): a zlib header never starts an XML document.
        codings = ["deflate"]
    if not codings:
        if len(body) > limit:
            raise DomainError("list_too_large", f"list of {len(body)} bytes, at most {limit}")
        for i in range(0, len(body), CHUNK):
            yield body[i : i + CHUNK]
        return
    if codings[0] == "deflate" and not _zlib_header(body) and _looks_like_xml(body):
        # belle-sip skips compression when it saves little yet some stacks keep the header.
        yield from _decoded_chunks(body, None, limit)
        return
    if codings[0] == "deflate":
        wbits = zlib.MAX_WBITS if _zlib_header(body) else -zlib.MAX_WBITS
    else:
        wbits = zlib.MAX_WBITS | 16
    yield from _inflate(body, wbits, limit)


def _inflate(body: bytes, wbits: int, limit: int) -> Iterator[bytes]:
    inflater = zlib.decompressobj(wbits)
    pending = body
    produced = 0
    try:
        while True:
            # max_length bounds each step, so a bomb never costs more than `limit` + CHUNK.
            out = inflater.decompress(pending, CHUNK)
            pending = inflater.unconsumed_tail
            produced += len(out)
            if produced > limit:
                raise DomainError("list_too_large", f"list inflates beyond {limit} bytes")
            if out:
                yield out
            if inflater.eof or (not pending and not out):
                break
    except zlib.error as exc:
        raise DomainError("list_bad_encoding", f"corrupt compressed list: {exc}") from None
    if not inflater.eof:
        raise DomainError("list_bad_encoding", "truncated compressed list")


# --- XML ---------------------------------------------------------------------------------


def _parse_chunks(chunks: Iterator[bytes], max_entries: int) -> ResourceList:
    # RFC 4826 documents are UTF-8; a declaration cannot say otherwise.
    parser = safe_xml.pull_parser(("start", "end"), encoding="utf-8")
    utf8 = codecs.getincrementaldecoder("utf-8")("strict")
    seen: dict[str, None] = {}
    total = skipped = 0
    root_checked = False
    tail = b""
    try:
        for chunk in chunks:
            try:
                utf8.decode(chunk)
            except UnicodeDecodeError as exc:
                raise DomainError("list_bad_encoding", f"list is not valid UTF-8: {exc}") from None
            window = tail + chunk
            if any(marker in window for marker in _DTD_MARKERS):
                raise DomainError("list_forbidden_xml", "DTDs and entity declarations are refused")
            tail = window[-_MARKER_OVERLAP:]
            parser.feed(chunk)
            for event, elem in parser.read_events():
                if not root_checked:
                    if elem.tag not in _ROOT_NAMES:
                        raise DomainError("list_malformed", f"root element is {elem.tag!r}")
                    root_checked = True
                if event != "end" or elem.tag not in _ENTRY_NAMES:
                    continue
                total += 1
                if total > max_entries:
                    raise DomainError(
                        "list_too_many_entries", f"more than {max_entries} entries in the list"
                    )
                uri = elem.get("uri")
                if valid_uri(uri):
                    seen.setdefault(uri, None)
                else:
                    skipped += 1
                # Entries are read once: dropping them keeps the tree small on long lists.
                parent = elem.getparent()
                elem.clear()
                if parent is not None:
                    parent.remove(elem)
        try:
            utf8.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise DomainError("list_bad_encoding", f"list is not valid UTF-8: {exc}") from None
        root = parser.close()
    except etree.XMLSyntaxError as exc:
        raise DomainError("list_malformed", f"list is not well-formed XML: {exc}") from None
    if root is None or root.tag not in _ROOT_NAMES:
        raise DomainError("list_malformed", "no resource-lists document")
    if root.getroottree().docinfo.doctype:
        raise DomainError("list_forbidden_xml", "DTDs are refused")
    return ResourceList(tuple(seen), total, skipped)
