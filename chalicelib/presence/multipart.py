"""The `multipart/related` framing of list NOTIFY bodies (RFC 2387, RFC 4662) in two profiles,
and their Content-Encoding.

`linphone` follows what the Linphone SDK 5.1 accepts (tests/data/interop/linphone-5.1/README.md):
an unquoted boundary as the LAST Content-Type parameter, no CRLF before the first boundary line,
parts labelled `Content-Id: cid` (that spelling, no angle brackets), and no `tel:` resource (it
crashes the client). `rfc` is the RFC form: quoted boundary, `Content-ID: <cid>`, part types
without parameters. Both put the RLMI part first and name it in `start`. "deflate" is a zlib
stream (RFC 1950), never raw or gzip data.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from chalicelib.ids import IdSource

CRLF = b"\r\n"
BOUNDARY_LENGTH = 24
CID_LENGTH = 10
DEFLATE_LEVEL = 6


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    quote_boundary: bool
    content_id_header: str
    angle_brackets: bool
    drop_tel_resources: bool
    # Part types with `;charset="UTF-8"` (Linphone's captures) or bare (the RFC form, which
    # strict parsers compare whole; each XML document declares its encoding anyway).
    charset_param: bool

    def content_id(self, cid: str) -> str:
        value = f"<{cid}>" if self.angle_brackets else cid
        return f"{self.content_id_header}: {value}"

    def content_type(self, root_type: str, start_cid: str, boundary: str) -> str:
        b = f'"{boundary}"' if self.quote_boundary else boundary
        # Linphone 5.1 crashes unless the boundary is the last parameter: keep it last.
        return f'multipart/related;type="{root_type}";start="<{start_cid}>";boundary={b}'


LINPHONE = Profile("linphone", False, "Content-Id", False, True, True)
RFC = Profile("rfc", True, "Content-ID", True, False, False)
PROFILES: dict[str, Profile] = {p.name: p for p in (LINPHONE, RFC)}


def profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; expected one of {sorted(PROFILES)}") from None


@dataclass(frozen=True, slots=True)
class Part:
    cid: str  # without angle brackets
    content_type: str
    payload: bytes


def part_bytes(part: Part, profile: Profile, boundary: str) -> bytes:
    """One part with its leading delimiter line, without the CRLF that ends it."""
    return (
        f"--{boundary}\r\nContent-Transfer-Encoding: binary\r\n"
        f"{profile.content_id(part.cid)}\r\nContent-Type: {part.content_type}\r\n\r\n"
    ).encode("ascii") + part.payload


def new_boundary(ids: IdSource) -> str:
    return ids(BOUNDARY_LENGTH)


def new_cid(ids: IdSource, domain: str) -> str:
    return f"{ids(CID_LENGTH)}@{domain}"


def accepts_deflate(accept_encoding: str | Sequence[str] | None) -> bool:
    """Whether an Accept-Encoding (one header value or several) allows deflate (q > 0)."""
    if accept_encoding is None:
        return False
    values = [accept_encoding] if isinstance(accept_encoding, str) else list(accept_encoding)
    for value in values:
        for item in str(value).split(","):
            coding, _, params = item.partition(";")
            if coding.strip().lower() != "deflate":
                continue
            q = 1.0
            for param in params.split(";"):
                name, _, raw = param.partition("=")
                if name.strip().lower() == "q":
                    try:
                        q = float(raw.strip())
                    except ValueError:
                        q = 0.0
            if q > 0:
                return True
    return False


def encode(body: bytes, deflate: bool) -> tuple[bytes, str | None]:
    """(wire body, Content-Encoding): a zlib stream when allowed and smaller, else plain."""
    if deflate:
        packed = zlib.compress(body, DEFLATE_LEVEL)
        if len(packed) < len(body):
            return packed, "deflate"
    return body, None
