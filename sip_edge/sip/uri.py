"""URIs: parse and validate sip:, sips:, tel: and other absolute URIs (RFC 3261 19.1, RFC 3966).

A URI keeps its exact text (`raw`) next to the parsed parts, because presence documents must echo
URIs byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sip_edge.sip.grammar import ESC, HOST_FULL, PORT_RE, remember, unescape
from sip_edge.sip.status import ParseError

_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*):")
_USER_RE = re.compile(rf"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|{ESC})+\Z")
_PASSWORD_RE = re.compile(rf"(?:[A-Za-z0-9\-_.!~*'()&=+$,]|{ESC})*\Z")
_PARAMCHARS_RE = re.compile(rf"(?:[A-Za-z0-9\-_.!~*'()\[\]/:&+$]|{ESC})+\Z")
_HCHARS_RE = re.compile(rf"(?:[A-Za-z0-9\-_.!~*'()\[\]/?:+$]|{ESC})*\Z")
_URIC_RE = re.compile(rf"(?:[A-Za-z0-9;/?:@&=+$,\-_.!~*'()\[\]]|{ESC})+\Z")
_TEL_RE = re.compile(r"\+?[0-9A-Fa-f*#().\-]+\Z")

#: The parameters of a value that has none: read-only, like every parsed value's.
NO_PARAMS: Mapping[str, str | None] = MappingProxyType({})


@dataclass(frozen=True)
class URI:
    """A sip:, sips:, tel: or other absolute URI; `raw` is the exact text received.

    Immutable, its parameters and headers too: one is shared by every message holding the
    same text (`parse_uri` remembers)."""

    raw: str
    scheme: str
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: Mapping[str, str | None] = field(default_factory=lambda: NO_PARAMS)
    headers: tuple[tuple[str, str], ...] = ()
    opaque: str = ""

    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else unescape(self.user)

    def __str__(self) -> str:
        return self.raw


def _parse_params(text: str, what: str) -> Mapping[str, str | None]:
    params: dict[str, str | None] = {}
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        if not _PARAMCHARS_RE.match(name) or (eq and not _PARAMCHARS_RE.match(value)):
            raise ParseError(f"bad parameter in {what}")
        params[name.lower()] = value if eq else None
    return MappingProxyType(params)


def check_host(host: str, what: str) -> None:
    if host in _GOOD_HOSTS:
        return
    _check_host(host, what)
    if len(_GOOD_HOSTS) >= _GOOD_HOSTS_MAX:  # bounded: a flood of new hosts starts it over
        _GOOD_HOSTS.clear()
    _GOOD_HOSTS.add(host)


#: Hosts already found valid: a few (the edge's peers, the domain) recur in every message.
_GOOD_HOSTS: set[str] = set()
_GOOD_HOSTS_MAX = 4096


def _check_host(host: str, what: str) -> None:
    if not HOST_FULL.match(host):
        raise ParseError(f"bad host in {what}")
    if host[0] == "[":
        import ipaddress

        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ParseError(f"bad IPv6 reference in {what}") from None


def parse_uri(text: str) -> URI:
    """Parse and validate an absolute URI; sip:/sips:/tel: are broken into parts."""
    uri = _URIS.get(text)
    return uri if uri is not None else remember(_URIS, text, _parse_uri(text))


_URIS: dict[str, URI] = {}


def _parse_uri(text: str) -> URI:
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
            params=_parse_params(params, "tel: URI") if params else NO_PARAMS,
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
        if not PORT_RE.match(port_text) or int(port_text) > 65535:
            raise ParseError("bad port in SIP URI")
        port = int(port_text)
    if not host:
        raise ParseError("no host in SIP URI")
    check_host(host, "SIP URI")
    params = _parse_params(params_text, "SIP URI") if semi else NO_PARAMS
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
        headers=tuple(headers),
        opaque=text[len(scheme) + 1 :],
    )
