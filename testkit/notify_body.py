"""An independent parser of list NOTIFY bodies (RFC 4662 multipart/related, RLMI, PIDF): the
stdlib `email` package for the multipart and lxml for each part, never the code that built them."""

from __future__ import annotations

import email
import email.policy
import zlib
from dataclasses import dataclass
from email.message import Message
from typing import Any

from lxml import etree

from chalicelib import safe_xml

RLMI = "{urn:ietf:params:xml:ns:rlmi}"
PIDF = "{urn:ietf:params:xml:ns:pidf}"
DM = "{urn:ietf:params:xml:ns:pidf:data-model}"
RPID = "{urn:ietf:params:xml:ns:pidf:rpid}"


@dataclass
class ParsedPart:
    raw_headers: bytes
    message: Message
    payload: bytes
    root: etree._Element


@dataclass
class ParsedBody:
    content_type: str
    boundary: str
    start: str
    plain: bytes
    parts: list[ParsedPart]

    @property
    def rlmi(self) -> etree._Element:
        return self.parts[0].root

    def resources(self) -> list[etree._Element]:
        return self.rlmi.findall(f"{RLMI}resource")

    def uris(self) -> list[str]:
        return [r.get("uri") for r in self.resources()]

    def pidf_for(self, cid: str) -> etree._Element:
        for part in self.parts[1:]:
            if cid_of(part.message) == cid:
                return part.root
        raise AssertionError(f"no part {cid}")

    @property
    def full_state(self) -> bool:
        return self.rlmi.get("fullState") == "true"

    def contacts(self) -> dict[str, str | None]:
        """{resource uri: PIDF contact of its instance, None for a resource without one}."""
        out: dict[str, str | None] = {}
        for res in self.resources():
            inst = res.find(f"{RLMI}instance")
            doc = self.pidf_for(inst.get("cid")) if inst is not None else None
            out[res.get("uri")] = (
                None if doc is None else doc.findtext(f"{PIDF}tuple/{PIDF}contact")
            )
        return out

    def users(self) -> dict[str, str]:
        """{resource uri: PIDF contact} for resources with an active instance."""
        out = {}
        for res in self.resources():
            inst = res.find(f"{RLMI}instance")
            if inst is not None and inst.get("state") == "active":
                doc = self.pidf_for(inst.get("cid"))
                out[res.get("uri")] = doc.findtext(f"{PIDF}tuple/{PIDF}contact")
        return out


def cid_of(message: Message) -> str:
    value = message.get("Content-ID") or ""
    return value.strip().removeprefix("<").removesuffix(">")


def parse_body(content_type: str, body: bytes, content_encoding: str | None) -> ParsedBody:
    """Parse a NOTIFY body independently of the code that built it."""
    plain = zlib.decompress(body) if content_encoding == "deflate" else body
    msg = email.message_from_bytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + plain,
        policy=email.policy.compat32,
    )
    assert msg.is_multipart(), content_type
    assert msg.get_content_type() == "multipart/related"
    boundary = msg.get_boundary()
    assert boundary
    start = msg.get_param("start")
    assert isinstance(start, str), start
    # Raw part headers, to check spellings the email package normalises away.
    chunks = plain.split(b"--" + boundary.encode())
    raw_parts = [c for c in chunks[1:-1]]
    parts = []
    for sub, raw in zip(msg.get_payload(), raw_parts, strict=True):
        head, _, payload = raw.lstrip(b"\r\n").partition(b"\r\n\r\n")
        payload = payload.removesuffix(b"\r\n")
        root = etree.fromstring(payload, safe_xml.parser())
        parts.append(ParsedPart(head, sub, payload, root))
    return ParsedBody(content_type, boundary, start, plain, parts)


def parse_notify(notify: Any) -> ParsedBody:
    """`parse_body` of a received list NOTIFY (a `sip_edge.sip.message.Request`)."""
    return parse_body(
        notify.headers.get("Content-Type") or "",
        notify.body,
        notify.headers.get("Content-Encoding"),
    )


def users_in(notify: Any) -> dict[str, str]:
    """{resource uri: PIDF contact} for every resource of a received NOTIFY that has one."""
    return {u: c for u, c in parse_notify(notify).contacts().items() if c is not None}
