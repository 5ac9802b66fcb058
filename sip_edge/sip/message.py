"""SIP message model: Request/Response, the Headers multi-map, header-value parsers, serializer.

Everything here is pure: strings in, dataclasses out. URIs and header values keep their exact
text (`raw`) next to the parsed parts, because presence documents must echo URIs byte for byte.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

SIP_VERSION = "SIP/2.0"
MAX_DELTA_SECONDS = 2**32 - 1  # RFC 3261 20.19: larger Expires values mean this
MAX_CSEQ = 2**31 - 1  # RFC 3261 8.1.1.5: the sequence number MUST be below 2**31

T = TypeVar("T")


class ParseError(ValueError):
    """A message or header value that breaks RFC 3261 grammar.

    `status`/`reason` say what a server should answer (400 mostly, 505, 413, 513).
    When the parser got far enough, `is_request`, `method` and `headers` describe the
    message so `error_response()` can build the answer (Via, From, To, Call-ID, CSeq).
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.is_request: bool | None = None
        self.method: str | None = None
        self.headers: Headers | None = None
        # StreamParser.feed: the events completed before the error, in the same chunk.
        self.preceding: list[Any] = []

    @property
    def reason_phrase(self) -> str:
        """The standard phrase for `status`, for the status line (`reason` is the detail)."""
        return REASON_PHRASES.get(self.status, "Bad Request")


# --- grammar pieces (RFC 3261 section 25); no nested ambiguous quantifiers anywhere ---------

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_QUOTED = r'"(?:[\t !#-\[\]-~\x80-\U0010ffff]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*"'
_ESC = r"%[0-9A-Fa-f]{2}"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_IPV6REF = r"\[[0-9A-Fa-f:.]{2,45}\]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = rf"(?:{_LABEL}\.)*{_LABEL}\.?"
_HOST = rf"(?:{_IPV6REF}|{_HOSTNAME})"

TOKEN_RE = re.compile(_TOKEN)
_TOKEN_FULL = re.compile(_TOKEN + r"\Z")
_QUOTED_RE = re.compile(_QUOTED)
_HOST_FULL = re.compile(rf"(?:{_IPV6REF}|{_HOSTNAME})\Z")
_IPV4_FULL = re.compile(_IPV4 + r"\Z")
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*):")
_USER_RE = re.compile(rf"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|{_ESC})+\Z")
_PASSWORD_RE = re.compile(rf"(?:[A-Za-z0-9\-_.!~*'()&=+$,]|{_ESC})*\Z")
_PARAMCHARS_RE = re.compile(rf"(?:[A-Za-z0-9\-_.!~*'()\[\]/:&+$]|{_ESC})+\Z")
_HCHARS_RE = re.compile(rf"(?:[A-Za-z0-9\-_.!~*'()\[\]/?:+$]|{_ESC})*\Z")
_URIC_RE = re.compile(rf"(?:[A-Za-z0-9;/?:@&=+$,\-_.!~*'()\[\]]|{_ESC})+\Z")
_TEL_RE = re.compile(r"\+?[0-9A-Fa-f*#().\-]+\Z")
_PORT_RE = re.compile(r"[0-9]{1,5}\Z")
_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
_CALLID_RE = re.compile(rf"{_WORD}(?:@{_WORD})?\Z")
_DIGITS_RE = re.compile(r"[0-9]+\Z")
_CSEQ_RE = re.compile(rf"([0-9]+)[ \t]+({_TOKEN})\Z")
_DATE_RE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT\Z"
)
# One `;name[=value]` parameter; value = token / host / quoted-string (RFC 3261 generic-param).
_GPARAM_RE = re.compile(
    rf"[ \t]*;[ \t]*({_TOKEN})(?:[ \t]*=[ \t]*({_TOKEN}|{_IPV6REF}|{_QUOTED}))?"
)
_DISPLAY_RE = re.compile(rf"({_TOKEN}(?:[ \t]+{_TOKEN})*|{_QUOTED})?[ \t]*<")
_ADDRSPEC_RE = re.compile(r"[^;,\s<>\"]+")
_VIA_RE = re.compile(
    rf"({_TOKEN})[ \t]*/[ \t]*({_TOKEN})[ \t]*/[ \t]*({_TOKEN})[ \t]+({_HOST})"
    rf"(?:[ \t]*:[ \t]*([0-9]{{1,5}}))?"
)
_MEDIA_RE = re.compile(rf"[ \t]*({_TOKEN})[ \t]*/[ \t]*({_TOKEN})")
_MPARAM_RE = re.compile(rf"[ \t]*;[ \t]*({_TOKEN})[ \t]*=[ \t]*({_TOKEN}|{_QUOTED})")
_AUTH_PARAM_RE = re.compile(rf"[ \t]*({_TOKEN})[ \t]*=[ \t]*({_TOKEN}|{_QUOTED})[ \t]*")
_TOKEN68_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*\Z")
_UNQUOTE_RE = re.compile(r"\\(.)", re.S)


def unquote(value: str | None) -> str | None:
    """The content of a quoted-string (escapes resolved); anything else unchanged."""
    if value is not None and len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        return _UNQUOTE_RE.sub(r"\1", inner) if "\\" in inner else inner
    return value


def quote(value: str) -> str:
    """A quoted-string holding `value`."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unescape(value: str) -> str:
    """Resolve %XX escapes of a URI component (UTF-8; invalid sequences kept as is)."""
    if "%" not in value:
        return value
    from urllib.parse import unquote as _url_unquote

    return _url_unquote(value, errors="surrogateescape")


def _bounded_int(digits: str, limit: int, what: str) -> int:
    # Python refuses int() of > 4300 digits; cap the length so a huge number is a clean 400.
    stripped = digits.lstrip("0") or "0"
    if len(stripped) > 20 or int(stripped) > limit:
        raise ParseError(f"{what} out of range")
    return int(stripped)


# --- header names ------------------------------------------------------------------------------

COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_CANONICAL = [
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-ID", "Content-Language",
    "Content-Length", "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From",
    "Identity", "Identity-Info", "In-Reply-To", "Max-Forwards", "Min-Expires", "MIME-Version",
    "Organization", "Path", "Priority", "Proxy-Authenticate", "Proxy-Authorization",
    "Proxy-Require", "Record-Route", "Refer-To", "Referred-By", "Reject-Contact", "Reply-To",
    "Request-Disposition", "Require", "Retry-After", "Route", "RSeq", "Server", "Service-Route",
    "Session-Expires", "Subject", "Subscription-State", "Supported", "Timestamp", "To",
    "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate",
]  # fmt: skip
CANONICAL_NAMES: dict[str, str] = {n.lower(): n for n in _CANONICAL}
CANONICAL_NAMES.update({k: v for k, v in COMPACT_FORMS.items()})

#: Headers whose grammar is a comma-separated list (RFC 3261 7.3.1 lets them be split/joined).
LIST_HEADERS = frozenset(
    n.lower()
    for n in (
        "Accept", "Accept-Encoding", "Accept-Language", "Allow", "Allow-Events", "Contact",
        "Content-Encoding", "Content-Language", "In-Reply-To", "Path", "Proxy-Require",
        "Record-Route", "Require", "Route", "Service-Route", "Supported", "Unsupported", "Via",
        "Warning", "Call-Info", "Alert-Info", "Error-Info",
    )
)  # fmt: skip

#: Headers that must appear at most once (RFC 3261 7.3.1 / 20); a repeat is a 400.
SINGLE_HEADERS = frozenset(
    n.lower()
    for n in (
        "Call-ID", "Content-Length", "Content-Type", "CSeq", "Date", "Expires", "From",
        "Max-Forwards", "To", "Event", "Subscription-State", "Content-Disposition",
        "Min-Expires", "MIME-Version",
    )
)  # fmt: skip


def canonical_name(name: str) -> str:
    """Compact forms expanded, well-known names in their RFC spelling, others as given."""
    return CANONICAL_NAMES.get(name.lower(), name)


def split_commas(value: str) -> list[str]:
    """Split a list header value at commas outside quoted-strings and <...>."""
    if "," not in value:
        v = value.strip()
        return [v] if v else []
    out: list[str] = []
    start = 0
    in_quote = False
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if in_quote:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            out.append(value[start:i].strip())
            start = i + 1
        i += 1
    out.append(value[start:].strip())
    return out


class Headers:
    """Ordered multi-map of header fields with case-insensitive, compact-expanded names.

    Each entry is one field line as received (after unfolding); `get_list` splits list
    headers at commas. Parsed values are cached per name until the name is modified.
    """

    __slots__ = ("_items", "_index", "_cache")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []  # (lower-case key, name, value)
        self._index: dict[str, list[str]] | None = None
        self._cache: dict[str, Any] = {}
        for name, value in items:
            self.add(name, value)

    @staticmethod
    def _check(name: str, value: str) -> None:
        # A CR or LF inside a value would smuggle extra header lines into the serialization.
        if not _TOKEN_FULL.match(name):
            raise ValueError(f"bad header name {name!r}")
        if "\r" in value or "\n" in value:
            raise ValueError(f"CR/LF in the value of {name}")

    def _changed(self, key: str) -> None:
        self._index = None
        self._cache.pop(key, None)

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for key, _, value in self._items:
                if key in index:
                    index[key].append(value)
                else:
                    index[key] = [value]
            self._index = index
        return index

    def add(self, name: str, value: str) -> None:
        """Append a field (after any existing ones of that name)."""
        self._check(name, value)
        canon = canonical_name(name)
        key = canon.lower()
        self._items.append((key, canon, value))
        self._changed(key)

    def set(self, name: str, value: str) -> None:
        """Replace every field of that name by one, at the first one's position (or the end)."""
        self._check(name, value)
        canon = canonical_name(name)
        key = canon.lower()
        out: list[tuple[str, str, str]] = []
        placed = False
        for item in self._items:
            if item[0] == key:
                if not placed:
                    out.append((key, canon, value))
                    placed = True
            else:
                out.append(item)
        if not placed:
            out.append((key, canon, value))
        self._items = out
        self._changed(key)

    def remove(self, name: str) -> None:
        key = canonical_name(name).lower()
        self._items = [it for it in self._items if it[0] != key]
        self._changed(key)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first field value of that name."""
        values = self._lookup().get(canonical_name(name).lower())
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every field value of that name, in order (one per header line)."""
        return list(self._lookup().get(canonical_name(name).lower(), ()))

    def get_list(self, name: str) -> list[str]:
        """Every element of a list header across all its lines, in order."""
        out: list[str] = []
        for v in self.get_all(name):
            out.extend(split_commas(v))
        return out

    def count(self, name: str) -> int:
        return len(self._lookup().get(canonical_name(name).lower(), ()))

    def parsed(self, name: str, parse: Callable[[Headers], T]) -> T:
        """`parse(self)` cached under `name` until a field of that name changes."""
        key = canonical_name(name).lower()
        try:
            return self._cache[key]
        except KeyError:
            value = self._cache[key] = parse(self)
            return value

    def copy(self) -> Headers:
        h = Headers()
        h._items = list(self._items)
        return h

    def items(self) -> list[tuple[str, str]]:
        """(name, value) pairs in order, names as they will be serialized."""
        return [(n, v) for _, n, v in self._items]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and canonical_name(name).lower() in self._lookup()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items())

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self.items() == other.items()

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


# --- URIs --------------------------------------------------------------------------------------


@dataclass
class URI:
    """A sip:, sips:, tel: or other absolute URI; `raw` is the exact text received."""

    raw: str
    scheme: str
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: list[tuple[str, str]] = field(default_factory=list)
    opaque: str = ""

    @property
    def is_sip(self) -> bool:
        return self.scheme in ("sip", "sips")

    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else unescape(self.user)

    @property
    def host_port(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.raw


def _parse_params(text: str, what: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        if not _PARAMCHARS_RE.match(name) or (eq and not _PARAMCHARS_RE.match(value)):
            raise ParseError(f"bad parameter in {what}")
        params[name.lower()] = value if eq else None
    return params


def _check_host(host: str, what: str) -> None:
    if not _HOST_FULL.match(host):
        raise ParseError(f"bad host in {what}")
    if host[0] == "[":
        import ipaddress

        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ParseError(f"bad IPv6 reference in {what}") from None


def parse_uri(text: str) -> URI:
    """Parse and validate an absolute URI; sip:/sips:/tel: are broken into parts."""
    m = _SCHEME_RE.match(text)
    if not m:
        raise ParseError("bad URI scheme")
    scheme = m.group(1).lower()
    rest = text[m.end() :]
    if scheme in ("sip", "sips"):
        return _parse_sip_uri(text, scheme, rest)
    if scheme == "tel":
        number, _, params = rest.partition(";")
        if not _TEL_RE.match(number):
            raise ParseError("bad tel: URI")
        return URI(
            raw=text,
            scheme=scheme,
            user=number,
            params=_parse_params(params, "tel: URI") if params else {},
            opaque=rest,
        )
    if not _URIC_RE.match(rest):
        raise ParseError("bad absolute URI")
    return URI(raw=text, scheme=scheme, opaque=rest)


def _parse_sip_uri(text: str, scheme: str, rest: str) -> URI:
    user = password = None
    # '@' is neither a paramchar nor an hvalue char, so the first one ends the userinfo.
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, colon, pw = userinfo.partition(":")
        if not _USER_RE.match(user) or (colon and not _PASSWORD_RE.match(pw)):
            raise ParseError("bad user part in SIP URI")
        password = pw if colon else None
    rest, qmark, hdrs = rest.partition("?")
    hostport, semi, params_text = rest.partition(";")
    if hostport.startswith("["):
        close = hostport.find("]")
        host, port_part = hostport[: close + 1], hostport[close + 1 :]
        if close < 0 or (port_part and port_part[0] != ":"):
            raise ParseError("bad IPv6 reference in SIP URI")
        colon, port_text = port_part[:1], port_part[1:]
    else:
        host, colon, port_text = hostport.partition(":")
    port: int | None = None
    if colon:
        if not _PORT_RE.match(port_text) or int(port_text) > 65535:
            raise ParseError("bad port in SIP URI")
        port = int(port_text)
    if not host:
        raise ParseError("no host in SIP URI")
    _check_host(host, "SIP URI")
    params = _parse_params(params_text, "SIP URI") if semi else {}
    headers: list[tuple[str, str]] = []
    if qmark:
        for part in hdrs.split("&"):
            hname, eq, hvalue = part.partition("=")
            if not hname or not eq or not _HCHARS_RE.match(hname) or not _HCHARS_RE.match(hvalue):
                raise ParseError("bad header in SIP URI")
            headers.append((hname, hvalue))
    return URI(
        raw=text,
        scheme=scheme,
        user=user,
        password=password,
        host=host,
        port=port,
        params=params,
        headers=headers,
        opaque=text[len(scheme) + 1 :],
    )


# --- name-addr (From, To, Contact, Route, Record-Route) -------------------------------------


@dataclass
class NameAddr:
    """`["display" ]<uri>;params` or `uri;params`; param values are kept as received."""

    uri: URI
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    raw: str = ""
    bracketed: bool = True

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
        bracketed = True
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
        bracketed = False
        pos = m.end()
    params, pos = _parse_gparams(text, pos, what)
    if pos < n and not (in_list and text[pos] == ","):
        raise ParseError(f"unexpected text in {what}")
    na = NameAddr(uri, display, params, text[start:pos].rstrip(), bracketed)
    return na, pos


def parse_name_addr(value: str, what: str = "address") -> NameAddr:
    """Parse a From/To style value (exactly one address)."""
    na, _ = _parse_name_addr_at(value, 0, what, False)
    return na


def parse_name_addr_list(value: str, what: str = "address list") -> list[NameAddr]:
    """Parse a Contact/Route style value holding one or more comma-separated addresses."""
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
    def maddr(self) -> str | None:
        return self.params.get("maddr")

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
    _check_host(host, "Via")
    if port is not None and int(port) > 65535:
        raise ParseError("bad port in Via")
    params, pos = _parse_gparams(text, m.end(), "Via")
    if pos < n and text[pos] != ",":
        raise ParseError("unexpected text in Via")
    received = params.get("received")
    if received is not None and not (_IPV4_FULL.match(received) or _is_ipv6(received.strip("[]"))):
        raise ParseError("bad received in Via")
    rport = params.get("rport")
    if rport is not None and not (_PORT_RE.match(rport) and int(rport) <= 65535):
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
            if not _TOKEN_FULL.match(item):
                raise ParseError(f"bad {what}")
            out.append(item)
    return out


@dataclass
class Event:
    """`Event: presence;id=x` (RFC 6665); `package` as received, compare case-insensitively."""

    package: str
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def id(self) -> str | None:
        return unquote(self.params.get("id"))


def parse_event(value: str) -> Event:
    v = value.strip()
    m = TOKEN_RE.match(v)
    if not m:
        raise ParseError("bad Event")
    params, pos = _parse_gparams(v, m.end(), "Event")
    if pos != len(v):
        raise ParseError("bad Event")
    return Event(m.group(0), params)


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


@dataclass
class Credentials:
    """Authorization/Proxy-Authorization (or a challenge): scheme and unquoted params."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token68: str | None = None  # e.g. `Basic dXNlcjpwYXNz` (RFC 7235), never valid in SIP

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.params.get(name.lower(), default)

    @property
    def is_digest(self) -> bool:
        return self.scheme.lower() == "digest"


def parse_credentials(value: str) -> Credentials:
    """`Digest username="a", realm="b", nc=00000001, ...` (RFC 3261 25.1 credentials)."""
    v = value.strip()
    m = TOKEN_RE.match(v)
    if not m or (m.end() < len(v) and v[m.end()] not in " \t"):
        raise ParseError("bad credentials")
    params: dict[str, str] = {}
    pos = m.end()
    n = len(v)
    t68 = _TOKEN68_RE.match(v[pos:].strip(" \t"))
    if t68:
        return Credentials(m.group(0), {}, t68.group(0))
    first = True
    while pos < n:
        if not first:
            if v[pos] != ",":
                raise ParseError("bad credentials")
            pos += 1
        pm = _AUTH_PARAM_RE.match(v, pos)
        if not pm:
            raise ParseError("bad credentials")
        key = pm.group(1).lower()
        if key in params:
            raise ParseError(f"repeated {key} in credentials")
        params[key] = unquote(pm.group(2)) or ""
        pos = pm.end()
        first = False
    return Credentials(m.group(0), params)


# --- messages ----------------------------------------------------------------------------------


def _single(headers: Headers, name: str) -> str:
    values = headers.get_all(name)
    if len(values) != 1:
        raise ParseError(f"{'missing' if not values else 'repeated'} {name}")
    return values[0]


class _Message:
    headers: Headers
    body: bytes

    @property
    def via(self) -> list[Via]:
        return self.headers.parsed("Via", parse_vias)

    @property
    def top_via(self) -> Via | None:
        vias = self.via
        return vias[0] if vias else None

    @property
    def from_(self) -> NameAddr:
        return self.headers.parsed("From", lambda h: parse_name_addr(_single(h, "From"), "From"))

    @property
    def to(self) -> NameAddr:
        return self.headers.parsed("To", lambda h: parse_name_addr(_single(h, "To"), "To"))

    @property
    def call_id(self) -> str:
        return self.headers.parsed("Call-ID", lambda h: parse_call_id(_single(h, "Call-ID")))

    @property
    def cseq(self) -> CSeq:
        return self.headers.parsed("CSeq", lambda h: parse_cseq(_single(h, "CSeq")))

    @property
    def contacts(self) -> list[NameAddr] | None:
        return self.headers.parsed("Contact", parse_contacts)

    @property
    def expires(self) -> int | None:
        v = self.headers.get("Expires")
        return None if v is None else parse_delta_seconds(v)

    @property
    def event(self) -> Event | None:
        v = self.headers.get("Event")
        return None if v is None else parse_event(v)

    @property
    def content_type(self) -> MediaType | None:
        v = self.headers.get("Content-Type")
        return None if v is None else parse_media_type(v)

    @property
    def require(self) -> list[str]:
        return parse_token_list(self.headers.get_all("Require"), "Require")

    @property
    def supported(self) -> list[str]:
        return parse_token_list(self.headers.get_all("Supported"), "Supported")

    @property
    def accept(self) -> list[MediaType]:
        return parse_accept(self.headers.get_all("Accept"))

    @property
    def content_encoding(self) -> list[str]:
        values = self.headers.get_all("Content-Encoding")
        return [e.lower() for e in parse_token_list(values, "Content-Encoding")]

    def authorization(self, proxy: bool = False) -> list[Credentials]:
        """Parsed Authorization (or Proxy-Authorization) headers, one per field line."""
        name = "Proxy-Authorization" if proxy else "Authorization"
        return [parse_credentials(v) for v in self.headers.get_all(name)]

    def _head_lines(self) -> list[str]:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Wire form, Content-Length set to the body's length (added if missing)."""
        lines = self._head_lines()
        have_length = False
        length = str(len(self.body))
        for key, name, value in self.headers._items:
            if key == "content-length":
                if have_length:
                    continue
                have_length = True
                value = length
            lines.append(f"{name}: {value}")
        if not have_length:
            lines.append(f"Content-Length: {length}")
        lines.append("\r\n")
        # surrogateescape gives back the exact octets of a non-UTF-8 header being echoed.
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body


@dataclass(eq=False)
class Request(_Message):
    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    @property
    def request_uri(self) -> URI:
        return parse_uri(self.uri)

    def _head_lines(self) -> list[str]:
        return [f"{self.method} {self.uri} {self.version}"]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Request) and self.to_bytes() == other.to_bytes()


@dataclass(eq=False)
class Response(_Message):
    status: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    def _head_lines(self) -> list[str]:
        return [f"{self.version} {self.status} {self.reason}"]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Response) and self.to_bytes() == other.to_bytes()


Message = Request | Response

REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service", 400: "Bad Request", 401: "Unauthorized",
    402: "Payment Required", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Timeout",
    410: "Gone", 412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 500: "Server Internal Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}  # fmt: skip

_TAG_RE = re.compile(r";[ \t]*tag[ \t]*=", re.I)


def new_tag() -> str:
    """A fresh To/From tag (RFC 3261 19.3: at least 32 bits of randomness)."""
    return secrets.token_hex(6)


def _copy_core(
    dst: Headers, vias: list[str], from_: str | None, to: str | None, call_id: str | None,
    cseq: str | None, status: int, to_tag: str | None,
) -> None:  # fmt: skip
    for v in vias:
        dst.add("Via", v)
    if from_ is not None:
        dst.add("From", from_)
    if to is not None:
        if status > 100 and not _TAG_RE.search(to):
            to = f"{to};tag={to_tag or new_tag()}"
        dst.add("To", to)
    if call_id is not None:
        dst.add("Call-ID", call_id)
    if cseq is not None:
        dst.add("CSeq", cseq)


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    to_tag: str | None = None,
) -> Response:
    """A response per RFC 3261 8.2.6: Via (all, in order), From, To, Call-ID, CSeq copied.

    A To tag (`to_tag`, else a random one) is added to a response above 100 whose request
    had none; pass the dialog's tag so retransmitted/refreshed answers keep it.
    """
    if not 100 <= status <= 699:
        raise ValueError(f"bad status {status}")
    h = Headers()
    src = request.headers
    _copy_core(
        h, src.get_all("Via"), src.get("From"), src.get("To"), src.get("Call-ID"),
        src.get("CSeq"), status, to_tag,
    )  # fmt: skip
    if status == 100:
        for ts in src.get_all("Timestamp"):  # RFC 3261 8.2.6.1
            h.add("Timestamp", ts)
    for name, value in headers:
        h.add(name, value)
    return Response(
        status, reason if reason is not None else REASON_PHRASES.get(status, ""), h, body
    )


def error_response(error: ParseError) -> Response | None:
    """The answer to a request the parser rejected, or None when none may or can be sent.

    None for responses, ACKs, and requests whose Via, From, To, Call-ID or CSeq never arrived.
    """
    h = error.headers
    if not error.is_request or h is None or error.method == "ACK":
        return None
    vias = h.get_all("Via")
    core = [h.get(n) for n in ("From", "To", "Call-ID", "CSeq")]
    if not vias or any(v is None for v in core):
        return None
    out = Headers()
    _copy_core(out, vias, core[0], core[1], core[2], core[3], error.status, None)
    out.add("Warning", f"399 - {quote(error.reason)}")
    return Response(error.status, error.reason_phrase, out)
