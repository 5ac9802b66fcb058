"""SIP messages: Request and Response with typed access to their headers, their wire form,
and the responses a server builds from a request (`make_response`, `error_response`).

Everything in `sip_edge.sip` is pure: strings in, dataclasses out. URIs and header values keep
their exact text (`raw`) next to the parsed parts, because presence documents must echo URIs byte
for byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from sip_edge.sip.grammar import quote, random_hex
from sip_edge.sip.headers import Headers
from sip_edge.sip.status import REASON_PHRASES, ParseError
from sip_edge.sip.uri import URI, parse_uri
from sip_edge.sip.values import (
    CSeq,
    DigestCredentials,
    Event,
    MediaType,
    NameAddr,
    Via,
    parse_accept,
    parse_call_id,
    parse_contacts,
    parse_credentials,
    parse_cseq,
    parse_delta_seconds,
    parse_event,
    parse_media_type,
    parse_name_addr,
    parse_token_list,
    parse_vias,
)

SIP_VERSION = "SIP/2.0"


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

    def authorization(self, proxy: bool = False) -> list[DigestCredentials]:
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
    # Octets of the datagram it came in (0 over streams or when built here): the amplification
    # limit of what an unverified UDP source may get back is counted against it.
    wire_size: int = 0
    # Its source proved itself (a digest nonce bound to that address, or a trusted proxy): its
    # answers are not held to the limit.
    source_verified: bool = False

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


_TAG_RE = re.compile(r";[ \t]*tag[ \t]*=", re.I)


def new_tag() -> str:
    """A fresh To/From tag (RFC 3261 19.3: at least 32 bits of randomness)."""
    return random_hex(6)


def _copy_core(
    dst: Headers, vias: list[str], from_: str | None, to: str | None, call_id: str | None,
    cseq: str | None, status: int, to_tag: str | None,
) -> None:  # fmt: skip
    # Values of a parsed message: split at its line ends already (add_copied checks nothing).
    for v in vias:
        dst.add_copied("Via", v)
    if from_ is not None:
        dst.add_copied("From", from_)
    if to is not None:
        if status > 100 and not _TAG_RE.search(to):
            to = f"{to};tag={to_tag or new_tag()}"
        dst.add_copied("To", to)
    if call_id is not None:
        dst.add_copied("Call-ID", call_id)
    if cseq is not None:
        dst.add_copied("CSeq", cseq)


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
