"""Strict RFC 3261 parsing of SIP messages from datagrams and from byte streams, with no I/O.

Hand-written on purpose: no maintained Python SIP parser is both strict enough to reject the
RFC 4475 torture messages and fast enough for an edge (a 2 KB SUBSCRIBE parses in tens of
microseconds). Every input either yields messages or raises `ParseError`; nothing else escapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sip_edge.sip.headers import (
    CANONICAL_NAMES,
    KNOWN_SPELLINGS,
    SINGLE_HEADERS,
    Headers,
    canonical_name,
)
from sip_edge.sip.message import Request, Response
from sip_edge.sip.status import ParseError
from sip_edge.sip.uri import parse_uri
from sip_edge.sip.values import (
    MAX_DELTA_SECONDS,
    check_date,
    parse_call_id,
    parse_contacts,
    parse_cseq,
    parse_delta_seconds,
    parse_media_type,
    parse_name_addr,
    parse_name_addr_list,
    parse_uint,
    parse_vias,
)

__all__ = [
    "DEFAULT_LIMITS",
    "KeepAlive",
    "ParseError",
    "ParserLimits",
    "StreamParser",
    "parse_datagram",
]


@dataclass(frozen=True)
class ParserLimits:
    """Bounds on what one message may hold; exceeding one is an error, never a big buffer.

    Defaults: lines up to 8 KiB, 128 header fields, 32 KiB of start line + headers, 256 KiB of
    body (an uncompressed 2000-number resource list is about 120 KiB), 288 KiB in all.
    Oversized head parts answer 513 Message Too Large; an oversized body 413.
    """

    max_line_length: int = 8192
    max_headers: int = 128
    max_header_bytes: int = 32768
    max_body_size: int = 262144
    max_message_size: int = 294912


DEFAULT_LIMITS = ParserLimits()


@dataclass(frozen=True)
class KeepAlive:
    """A CRLF keep-alive (RFC 5626 3.5.1): send `reply` back (CRLF pong on streams, none on UDP)."""

    reply: bytes = b""


_TOKEN_FULL = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+\Z", re.I)
_STATUS_RE = re.compile(r"[1-6][0-9][0-9]\Z")
_CSEQ_METHOD_RE = re.compile(r"\s*[0-9]+\s+(\S+)")
_STRIP = " \t"
_LOWER = {v: v.lower() for v in CANONICAL_NAMES.values()}


def _first_line_kind(line: str) -> bool:
    return not line.startswith("SIP/")


def _split_head(head: bytes, limits: ParserLimits) -> tuple[str, Headers, dict[str, int]]:
    """Start line, header fields (unfolded, compact names expanded), counts of single headers."""
    if len(head) + 4 > limits.max_header_bytes:
        raise ParseError("Headers too large", 513)
    try:
        text = head.decode("utf-8")
        bad_utf8 = False
    except UnicodeDecodeError:
        # Keep going so the error can still carry Via/From/To for a 400.
        text = head.decode("utf-8", "surrogateescape")
        bad_utf8 = True
    n_crlf = text.count("\r\n")
    if text.count("\r") != n_crlf or text.count("\n") != n_crlf:
        raise ParseError("Bare CR or LF in the header section")
    lines = text.split("\r\n")
    start = lines[0]
    headers = Headers()
    items = headers._items
    counts: dict[str, int] = {}
    max_line = limits.max_line_length
    names = CANONICAL_NAMES
    for line in lines[1:]:
        if len(line) > max_line:
            raise ParseError("Header line too long", 513)
        if not line:
            raise ParseError("Empty line inside the header section")
        if line[0] in _STRIP:
            if not items:
                raise ParseError("Continuation line without a header")
            key, canon, value = items[-1]
            items[-1] = (key, canon, (value + " " + line.strip(_STRIP)).strip(_STRIP))
            continue
        name, colon, value = line.partition(":")
        spelled = KNOWN_SPELLINGS.get(name)  # the usual spellings, without lowering each name
        if spelled is not None and colon:
            canon, key = spelled
        else:
            name = name.rstrip(_STRIP)
            key = name.lower()
            known = names.get(key)
            if known is None:
                if not colon or not _TOKEN_FULL.match(name):
                    raise ParseError("Malformed header line")
                canon = name
            elif not colon:
                raise ParseError("Malformed header line")
            else:
                canon = known
                key = _LOWER.get(canon) or canon.lower()
        if key in SINGLE_HEADERS:
            counts[key] = counts.get(key, 0) + 1
        items.append((key, canon, value.strip(_STRIP)))
    if len(items) > limits.max_headers:
        err = ParseError("Too many header fields", 513)
        err.headers = headers  # enough of them arrived to answer
        raise err
    if len(start) > max_line:
        raise ParseError("Start line too long", 513)
    if bad_utf8:
        err = ParseError("Header section is not UTF-8")
        err.headers = headers
        raise err
    return start, headers, counts


def _validate_headers(headers: Headers, counts: dict[str, int], request: bool = True) -> None:
    """What every message must hold, parsed now (a request's addresses too); a response's
    From, To and Contact only when read (the edge reads a response's Via and CSeq: it is the
    answer to one of its NOTIFYs, matched by branch)."""
    for key, n in counts.items():
        if n > 1:
            raise ParseError(f"Repeated {canonical_name(key)} header")
    cache = headers._cache
    vias = parse_vias(headers)
    if not vias:
        raise ParseError("Missing Via header")
    cache["via"] = vias
    for name, key in (("From", "from"), ("To", "to")):
        value = headers.get(name)
        if value is None:
            raise ParseError(f"Missing {name} header")
        if request:
            cache[key] = parse_name_addr(value, name)
    value = headers.get("Call-ID")
    if value is None:
        raise ParseError("Missing Call-ID header")
    cache["call-id"] = parse_call_id(value)
    value = headers.get("CSeq")
    if value is None:
        raise ParseError("Missing CSeq header")
    cache["cseq"] = parse_cseq(value)
    if not request:
        return
    if "contact" in headers:
        cache["contact"] = parse_contacts(headers)
    for name in ("Route", "Record-Route"):
        for value in headers.get_all(name):
            parse_name_addr_list(value, name)
    value = headers.get("Max-Forwards")
    if value is not None:
        parse_uint(value, "Max-Forwards", 255)
    value = headers.get("Expires")
    if value is not None:
        parse_delta_seconds(value)
    value = headers.get("Date")
    if value is not None:
        check_date(value)
    value = headers.get("Content-Type")
    if value is not None:
        parse_media_type(value)


def _parse_start(start: str) -> tuple[bool, str | None, Request | Response]:
    if start.startswith("SIP/"):
        version, _, rest = start.partition(" ")
        code, _, reason = rest.partition(" ")
        if version != "SIP/2.0":
            if _VERSION_RE.match(version):
                raise ParseError("Version Not Supported", 505)
            raise ParseError("Malformed status line")
        if not _STATUS_RE.match(code):
            raise ParseError("Bad status code")
        return False, None, Response(int(code), reason)
    parts = start.split(" ")
    if len(parts) != 3:
        raise ParseError("Malformed request line")
    method, uri, version = parts
    if not _TOKEN_FULL.match(method):
        raise ParseError("Bad method")
    if version != "SIP/2.0":
        if _VERSION_RE.match(version):
            raise ParseError("Version Not Supported", 505)
        raise ParseError("Malformed request line")
    parsed = parse_uri(uri)
    if parsed.headers:
        # RFC 3261 19.1.1 table: headers are not allowed in a Request-URI.
        raise ParseError("Request-URI with headers")
    return True, method, Request(method, uri)


def _parse_head(head: bytes, limits: ParserLimits) -> Request | Response:
    headers: Headers | None = None
    method: str | None = None
    try:
        start, headers, counts = _split_head(head, limits)
        is_request, method, msg = _parse_start(start)
        _validate_headers(headers, counts, is_request)
        if method is not None and headers._cache["cseq"].method != method:
            raise ParseError("CSeq method does not match the request method")
        msg.headers = headers
        return msg
    except ParseError as err:
        if err.headers is None:
            err.headers = headers
        if err.is_request is None:
            first = head.split(b"\r\n", 1)[0].decode("utf-8", "replace")
            err.is_request = _first_line_kind(first)
        if err.is_request and err.method is None:
            if method is None and err.headers is not None:
                m = _CSEQ_METHOD_RE.match(err.headers.get("CSeq") or "")
                method = m.group(1) if m else None
            err.method = method
        raise


def _content_length(msg: Request | Response) -> int | None:
    value = msg.headers.get("Content-Length")
    if value is None:
        return None
    try:
        return parse_uint(value, "Content-Length", MAX_DELTA_SECONDS)
    except ParseError as err:
        err.headers = msg.headers
        err.is_request = isinstance(msg, Request)
        err.method = msg.method if isinstance(msg, Request) else None
        raise


def _fail(msg: Request | Response, reason: str, status: int = 400) -> ParseError:
    err = ParseError(reason, status)
    err.headers = msg.headers
    err.is_request = isinstance(msg, Request)
    err.method = msg.method if isinstance(msg, Request) else None
    return err


def _check_sizes(msg: Request | Response, head_len: int, body_len: int, lim: ParserLimits) -> None:
    if body_len > lim.max_body_size:
        raise _fail(msg, "Body too large", 413)
    if head_len + body_len > lim.max_message_size:
        raise _fail(msg, "Message too large", 513)


def parse_datagram(
    data: bytes, limits: ParserLimits = DEFAULT_LIMITS
) -> Request | Response | KeepAlive:
    """Parse the one message a UDP datagram holds (RFC 3261 18.3 rules for Content-Length).

    Octets past Content-Length are dropped; fewer than it announces is a 400. Without
    Content-Length the body runs to the end of the datagram. A datagram of CRLFs only is a
    keep-alive.
    """
    try:
        if not data.strip(b"\r\n"):
            return KeepAlive()
        if data[:1] in (b"\r", b"\n"):
            data = data.lstrip(b"\r\n")
        end = data.find(b"\r\n\r\n")
        if end < 0:
            head = data[:-2] if data.endswith(b"\r\n") else data
            # Parse anyway: a broken head raises with its own reason, a sound one gets a 400.
            raise _fail(_parse_head(head, limits), "No empty line after the header section")
        msg = _parse_head(data[:end], limits)
        start = end + 4
        available = len(data) - start
        length = _content_length(msg)
        if length is None:
            length = available
        elif length > available:
            raise _fail(msg, "Body shorter than Content-Length")
        _check_sizes(msg, start, length, limits)
        msg.body = data[start : start + length]
        return msg
    except ParseError:
        raise
    except Exception as exc:  # the contract: only ParseError ever escapes
        raise ParseError(f"Unparseable message ({type(exc).__name__})") from exc


class StreamParser:
    """Incremental parser for one TCP/TLS connection, h11 style.

    `receive_data(bytes)` then `next_event()` until it returns None; or `feed(bytes)` for a
    list. Content-Length is mandatory (RFC 3261 18.3). After a ParseError the byte stream
    cannot be resynchronised: answer if `error_response()` allows, then close the connection.
    Memory stays bounded by the limits: a head is refused as soon as it outgrows them, and a
    body is refused on its Content-Length before any of it is buffered.
    """

    def __init__(self, limits: ParserLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._buf = bytearray()
        self._scan = 0  # where the search for the blank line resumes
        self._line_start = 0  # start of the (incomplete) line being received
        self._pending: Request | Response | None = None
        self._body_len = 0
        self._error: ParseError | None = None

    @property
    def buffered(self) -> int:
        """Octets received but not yet part of an event."""
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._buf += data

    def feed(self, data: bytes) -> list[Request | Response | KeepAlive]:
        """All events `data` completes. On error the ones before it are in `error.preceding`."""
        self.receive_data(data)
        out: list[Request | Response | KeepAlive] = []
        while True:
            try:
                event = self.next_event()
            except ParseError as err:
                err.preceding = out
                raise
            if event is None:
                return out
            out.append(event)

    def next_event(self) -> Request | Response | KeepAlive | None:
        """The next complete message or keep-alive, or None until more data arrives."""
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except ParseError as err:
            self._error = err
            raise
        except Exception as exc:  # the contract: only ParseError ever escapes
            self._error = ParseError(f"Unparseable message ({type(exc).__name__})")
            raise self._error from exc

    def _next(self) -> Request | Response | KeepAlive | None:
        buf = self._buf
        if self._pending is not None:
            return self._take_body()
        # RFC 3261 7.5 says to ignore CRLFs before a start line; RFC 5626 makes a double
        # CRLF a ping to answer with a single CRLF.
        while buf[:2] == b"\r\n":
            if buf[:4] == b"\r\n\r\n":
                del buf[:4]
                return KeepAlive(b"\r\n")
            if len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                return None
            del buf[:2]
        if buf[:1] == b"\r" and len(buf) == 1:
            return None
        lim = self.limits
        end = buf.find(b"\r\n\r\n", self._scan)
        if end < 0:
            last = buf.rfind(b"\r\n", self._scan)
            if last >= 0:
                self._line_start = last + 2
            self._scan = max(0, len(buf) - 3)
            if len(buf) - self._line_start > lim.max_line_length:
                raise ParseError("Header line too long", 513)
            if len(buf) > lim.max_header_bytes:
                raise ParseError("Headers too large", 513)
            return None
        msg = _parse_head(bytes(buf[:end]), lim)
        del buf[: end + 4]
        self._scan = self._line_start = 0
        length = _content_length(msg)
        if length is None:
            raise _fail(msg, "Content-Length is mandatory on stream transports")
        _check_sizes(msg, end + 4, length, lim)
        self._pending = msg
        self._body_len = length
        return self._take_body()

    def _take_body(self) -> Request | Response | None:
        n = self._body_len
        if len(self._buf) < n:
            return None
        msg = self._pending
        assert msg is not None
        msg.body = bytes(self._buf[:n])
        del self._buf[:n]
        self._pending = None
        return msg
