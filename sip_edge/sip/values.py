"""Header values: From/To/Contact (name-addr), Via, CSeq, Call-ID, Expires, Date, option tags,
Event, media types and Authorization credentials, parsed into dataclasses.

Each parser takes one field value and returns its parts or raises `ParseError`; parsed values keep
their exact text (`raw`) where a response or a presence document must echo it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from chalicelib import digest
from chalicelib.digest import DigestCredentials
from sip_edge.sip.grammar import (
    HOST,
    IPV4_FULL,
    IPV6REF,
    PORT_RE,
    QUOTED,
    TOKEN,
    TOKEN_FULL,
    TOKEN_RE,
    quote,
    remember,
    unquote,
)
from sip_edge.sip.headers import Headers, split_commas
from sip_edge.sip.status import ParseError
from sip_edge.sip.uri import NO_PARAMS, URI, check_host, parse_uri

MAX_DELTA_SECONDS = 2**32 - 1  # RFC 3261 20.19: larger Expires values mean this
MAX_CSEQ = 2**31 - 1  # RFC 3261 8.1.1.5: the sequence number MUST be below 2**31

_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
_CALLID_RE = re.compile(rf"{_WORD}(?:@{_WORD})?\Z")
_DIGITS_RE = re.compile(r"[0-9]+\Z")
_CSEQ_RE = re.compile(rf"([0-9]+)[ \t]+({TOKEN})\Z")
_DATE_RE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT\Z"
)
# One `;name[=value]` parameter; value = token / host / quoted-string (RFC 3261 generic-param).
_GPARAM_RE = re.compile(rf"[ \t]*;[ \t]*({TOKEN})(?:[ \t]*=[ \t]*({TOKEN}|{IPV6REF}|{QUOTED}))?")
_DISPLAY_RE = re.compile(rf"({TOKEN}(?:[ \t]+{TOKEN})*|{QUOTED})?[ \t]*<")
_ADDRSPEC_RE = re.compile(r"[^;,\s<>\"]+")
_VIA_RE = re.compile(
    rf"({TOKEN})[ \t]*/[ \t]*({TOKEN})[ \t]*/[ \t]*({TOKEN})[ \t]+({HOST})"
    rf"(?:[ \t]*:[ \t]*([0-9]{{1,5}}))?"
)
_MEDIA_RE = re.compile(rf"[ \t]*({TOKEN})[ \t]*/[ \t]*({TOKEN})")
_MPARAM_RE = re.compile(rf"[ \t]*;[ \t]*({TOKEN})[ \t]*=[ \t]*({TOKEN}|{QUOTED})")


def _bounded_int(digits: str, limit: int, what: str) -> int:
    # Python refuses int() of > 4300 digits; cap the length so a huge number is a clean 400.
    stripped = digits.lstrip("0") or "0"
    if len(stripped) > 20 or int(stripped) > limit:
        raise ParseError(f"{what} out of range")
    return int(stripped)


# --- name-addr (From, To, Contact, Route, Record-Route) -------------------------------------


@dataclass(frozen=True)
class NameAddr:
    """`["display" ]<uri>;params` or `uri;params`; param values are kept as received.

    Immutable, its parameters too: one is shared by every message holding the same text
    (`parse_name_addr` remembers)."""

    uri: URI
    display_name: str | None = None
    params: Mapping[str, str | None] = field(default_factory=lambda: NO_PARAMS)
    raw: str = ""

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def param(self, name: str) -> str | None:
        """A parameter's value with any quoting removed."""
        return unquote(self.params.get(name.lower()))

    def __str__(self) -> str:
        return self.raw or self.to_string()

    def to_string(self) -> str:
        out = f"<{self.uri.raw}>"
        if self.display_name is not None:
            out = f"{quote(self.display_name)} {out}"
        for k, v in self.params.items():
            out += f";{k}" if v is None else f";{k}={v}"
        return out


def _parse_gparams(text: str, pos: int, what: str) -> tuple[dict[str, str | None], int]:
    params: dict[str, str | None] = {}
    n = len(text)
    while True:
        m = _GPARAM_RE.match(text, pos)
        if not m:
            break
        params[m.group(1).lower()] = m.group(2)
        pos = m.end()
    while pos < n and text[pos] in " \t":
        pos += 1
    if pos < n and text[pos] == ";":
        raise ParseError(f"bad parameter in {what}")
    return params, pos


def _parse_name_addr_at(text: str, pos: int, what: str, in_list: bool) -> tuple[NameAddr, int]:
    n = len(text)
    while pos < n and text[pos] in " \t":
        pos += 1
    start = pos
    m = _DISPLAY_RE.match(text, pos)
    if m:
        display = m.group(1)
        end = text.find(">", m.end())
        if end < 0:
            raise ParseError(f"unterminated <URI> in {what}")
        uri = parse_uri(text[m.end() : end])
        if display is not None and display.startswith('"'):
            display = unquote(display)
        pos = end + 1
    else:
        if pos < n and text[pos] == '"':
            raise ParseError(f"bad quoted display name in {what}")
        m = _ADDRSPEC_RE.match(text, pos)
        if not m:
            raise ParseError(f"no URI in {what}")
        uri_text = m.group(0)
        # RFC 3261 20: a URI holding ',', ';' or '?' must be in <>; ';' and ',' end it here.
        if "?" in uri_text:
            raise ParseError(f"URI with headers outside <> in {what}")
        uri = parse_uri(uri_text)
        display = None
        pos = m.end()
    params, pos = _parse_gparams(text, pos, what)
    if pos < n and not (in_list and text[pos] == ","):
        raise ParseError(f"unexpected text in {what}")
    frozen = MappingProxyType(params) if params else NO_PARAMS
    na = NameAddr(uri, display, frozen, text[start:pos].rstrip())
    return na, pos


def parse_name_addr(value: str, what: str = "address") -> NameAddr:
    """Parse a From/To style value (exactly one address)."""
    na = _NAME_ADDRS.get(value)
    if na is None:
        na = remember(_NAME_ADDRS, value, _parse_name_addr_at(value, 0, what, False)[0])
    return na


_NAME_ADDRS: dict[str, NameAddr] = {}
_NAME_ADDR_LISTS: dict[str, tuple[NameAddr, ...]] = {}


def parse_name_addr_list(value: str, what: str = "address list") -> list[NameAddr]:
    """Parse a Contact/Route style value holding one or more comma-separated addresses."""
    known = _NAME_ADDR_LISTS.get(value)
    if known is None:
        known = remember(_NAME_ADDR_LISTS, value, tuple(_parse_name_addr_list(value, what)))
    return list(known)


def _parse_name_addr_list(value: str, what: str) -> list[NameAddr]:
    out: list[NameAddr] = []
    pos = 0
    n = len(value)
    while True:
        na, pos = _parse_name_addr_at(value, pos, what, True)
        out.append(na)
        if pos >= n:
            return out
        pos += 1  # the comma


def parse_contacts(headers: Headers) -> list[NameAddr] | None:
    """Every Contact; None for the `Contact: *` wildcard (alone, as REGISTER requires)."""
    values = headers.get_all("Contact")
    if len(values) == 1 and values[0].strip() == "*":
        return None
    out: list[NameAddr] = []
    for v in values:
        if v.strip() == "*":
            raise ParseError("Contact: * mixed with other contacts")
        out.extend(parse_name_addr_list(v, "Contact"))
    return out


# --- Via ---------------------------------------------------------------------------------------


@dataclass
class Via:
    """One Via entry: `SIP/2.0/UDP host:port;branch=...;rport;received=...`."""

    protocol: str
    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    raw: str = ""

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def has_rport(self) -> bool:
        return "rport" in self.params

    @property
    def rport(self) -> int | None:
        v = self.params.get("rport")
        return int(v) if v else None

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.raw


def _parse_via_at(text: str, pos: int) -> tuple[Via, int]:
    n = len(text)
    while pos < n and text[pos] in " \t":
        pos += 1
    start = pos
    m = _VIA_RE.match(text, pos)
    if not m:
        raise ParseError("bad Via")
    name, version, transport, host, port = m.groups()
    if name.upper() != "SIP":
        raise ParseError("bad protocol in Via")
    check_host(host, "Via")
    if port is not None and int(port) > 65535:
        raise ParseError("bad port in Via")
    params, pos = _parse_gparams(text, m.end(), "Via")
    if pos < n and text[pos] != ",":
        raise ParseError("unexpected text in Via")
    received = params.get("received")
    if received is not None and not (IPV4_FULL.match(received) or _is_ipv6(received.strip("[]"))):
        raise ParseError("bad received in Via")
    rport = params.get("rport")
    if rport is not None and not (PORT_RE.match(rport) and int(rport) <= 65535):
        raise ParseError("bad rport in Via")
    if "branch" in params and params["branch"] is None:
        raise ParseError("empty branch in Via")
    via = Via(f"{name}/{version}", transport.upper(), host, int(port) if port else None, params)
    via.raw = text[start:pos].rstrip()
    return via, pos


def _is_ipv6(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def parse_via(value: str) -> list[Via]:
    """Parse one Via field value (one or more comma-separated entries)."""
    out: list[Via] = []
    pos = 0
    n = len(value)
    while True:
        via, pos = _parse_via_at(value, pos)
        out.append(via)
        if pos >= n:
            return out
        pos += 1


def parse_vias(headers: Headers) -> list[Via]:
    out: list[Via] = []
    for v in headers.get_all("Via"):
        out.extend(parse_via(v))
    return out


# --- simple scalar headers ---------------------------------------------------------------------


@dataclass(frozen=True)
class CSeq:
    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(value: str) -> CSeq:
    m = _CSEQ_RE.match(value.strip())
    if not m:
        raise ParseError("bad CSeq")
    return CSeq(_bounded_int(m.group(1), MAX_CSEQ, "CSeq"), m.group(2))


def parse_call_id(value: str) -> str:
    v = value.strip()
    if not _CALLID_RE.match(v):
        raise ParseError("bad Call-ID")
    return v


def parse_uint(value: str, what: str, limit: int) -> int:
    """A 1*DIGIT header (Content-Length, Max-Forwards) that must not exceed `limit`."""
    v = value.strip()
    if not _DIGITS_RE.match(v):
        raise ParseError(f"bad {what}")
    return _bounded_int(v, limit, what)


def parse_delta_seconds(value: str, what: str = "Expires") -> int:
    """delta-seconds, clamped to 2**32-1 as RFC 3261 20.19 says for larger values."""
    v = value.strip()
    if not _DIGITS_RE.match(v):
        raise ParseError(f"bad {what}")
    v = v.lstrip("0") or "0"
    return MAX_DELTA_SECONDS if len(v) > 10 else min(int(v), MAX_DELTA_SECONDS)


def check_date(value: str) -> None:
    """RFC 3261 20.17: rfc1123-date, and the zone MUST be GMT."""
    if not _DATE_RE.match(value.strip()):
        raise ParseError("bad Date")


def parse_token_list(values: Iterable[str], what: str) -> list[str]:
    """Require/Supported/Proxy-Require/Allow: option tags or methods, in order."""
    out: list[str] = []
    for v in values:
        for item in split_commas(v):
            if not TOKEN_FULL.match(item):
                raise ParseError(f"bad {what}")
            out.append(item)
    return out


@dataclass(frozen=True)
class Event:
    """`Event: presence;id=x` (RFC 6665); `package` as received, compare case-insensitively.
    Remembered by its text and shared (read-only), as every SUBSCRIBE carries the same one."""

    package: str
    params: Mapping[str, str | None] = field(default_factory=lambda: NO_PARAMS)

    @property
    def id(self) -> str | None:
        return unquote(self.params.get("id"))


def parse_event(value: str) -> Event:
    known = _EVENTS.get(value)
    if known is not None:
        return known
    v = value.strip()
    m = TOKEN_RE.match(v)
    if not m:
        raise ParseError("bad Event")
    params, pos = _parse_gparams(v, m.end(), "Event")
    if pos != len(v):
        raise ParseError("bad Event")
    frozen = MappingProxyType(params) if params else NO_PARAMS
    return remember(_EVENTS, value, Event(m.group(0), frozen))


_EVENTS: dict[str, Event] = {}


@dataclass
class MediaType:
    """`type/subtype;param=value` (Content-Type, Accept); param values unquoted."""

    type: str
    subtype: str
    params: dict[str, str] = field(default_factory=dict)
    raw: str = ""

    @property
    def mime(self) -> str:
        return f"{self.type}/{self.subtype}".lower()

    def __str__(self) -> str:
        return self.raw or self.mime


def _parse_media_at(text: str, pos: int, what: str, allow_flags: bool) -> tuple[MediaType, int]:
    m = _MEDIA_RE.match(text, pos)
    if not m:
        raise ParseError(f"bad {what}")
    start = m.start(1)
    params: dict[str, str] = {}
    pos = m.end()
    while True:
        pm = _MPARAM_RE.match(text, pos)
        if pm:
            params[pm.group(1).lower()] = unquote(pm.group(2)) or ""
            pos = pm.end()
            continue
        if allow_flags:
            gm = _GPARAM_RE.match(text, pos)
            if gm:
                params[gm.group(1).lower()] = unquote(gm.group(2)) or ""
                pos = gm.end()
                continue
        break
    end = pos
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return MediaType(m.group(1), m.group(2), params, text[start:end]), pos


def parse_media_type(value: str, what: str = "Content-Type") -> MediaType:
    mt, pos = _parse_media_at(value, 0, what, False)
    if pos != len(value):
        raise ParseError(f"bad {what}")
    return mt


def parse_accept(values: Iterable[str]) -> list[MediaType]:
    """Every media range of the Accept headers, in order (an empty Accept means none)."""
    out: list[MediaType] = []
    for v in values:
        for item in split_commas(v):
            mt, pos = _parse_media_at(item, 0, "Accept", True)
            if pos != len(item):
                raise ParseError("bad Accept")
            out.append(mt)
    return out


def parse_credentials(value: str) -> DigestCredentials:
    """`Digest username="a", realm="b", nc=00000001, ...` (RFC 3261 25.1 credentials).

    The grammar lives in `chalicelib.digest`, shared with HTTP so both refuse the same input."""
    try:
        return digest.parse_credentials(value)
    except digest.MalformedCredentials as exc:
        raise ParseError(str(exc)) from exc
