"""Shared helpers of the presence tests: fixture SUBSCRIBEs, seeded accounts, an independent
NOTIFY body parser (stdlib `email` for the multipart, lxml for each part)."""

from __future__ import annotations

import email
import email.policy
import re
import zlib
from dataclasses import dataclass
from email.message import Message
from typing import Any

from lxml import etree

from chalicelib import safe_xml, tables
from chalicelib.accounts import phone
from tests.conftest import INTEROP

RLMI = "{urn:ietf:params:xml:ns:rlmi}"
PIDF = "{urn:ietf:params:xml:ns:pidf}"
DM = "{urn:ietf:params:xml:ns:pidf:data-model}"
RPID = "{urn:ietf:params:xml:ns:pidf:rpid}"

#: The entries of the captured SUBSCRIBEs, in order.
FIXTURE_ENTRIES = [
    "sip:+33600000002@example.org;user=phone",
    "sip:+33612345678@example.org;user=phone",
    "sip:+33700000001@example.org;user=phone",
    "sip:carol@example.org",
    "sip:dave@example.org",
]
#: Who is a user in the accepted NOTIFY fixtures.
FIXTURE_USERS = {
    "sip:+33612345678@example.org;user=phone": "sip:bob@example.org",
    "sip:carol@example.org": "sip:carol@example.org",
}


def sip_message(name: str) -> tuple[dict[str, str], bytes]:
    """Headers (lower-case names, last wins) and body of a captured message."""
    raw = (INTEROP / "sip" / f"{name}.raw").read_bytes()
    head, _, body = raw.partition(b"\r\n\r\n")
    headers: dict[str, str] = {}
    for line in head.decode().split("\r\n")[1:]:
        name_, _, value = line.partition(":")
        headers[name_.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(body)))
    return headers, body[:length]


def put_account(
    username: str,
    *,
    phone_number: str | None = None,
    discoverable: bool = True,
    disabled: bool = False,
    domain: str = "example.org",
) -> None:
    aor = f"{username}@{domain}"
    item: dict[str, object] = {
        "aor": aor,
        "username": username,
        "domain": domain,
        "discoverable": discoverable,
        "disabled": disabled,
    }
    if phone_number:
        item["phone"] = phone_number
        tables.table(tables.PHONE_INDEX).put_item(
            Item={
                "phone_hash": phone.phone_hash(phone_number),
                "aor": aor,
                "discoverable": discoverable and not disabled,
            }
        )
    tables.table(tables.ACCOUNTS).put_item(Item=item)


def seed_fixture_users() -> None:
    put_account("bob", phone_number="+33612345678")
    put_account("carol")


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


class SequentialIds:
    """Predictable tokens for golden files: "a0000001", "a0000002", ... padded to `length`."""

    def __init__(self) -> None:
        self._n = 0

    def __call__(self, length: int) -> str:
        self._n += 1
        digits = str(self._n)
        return "a" + digits.rjust(max(length - 1, len(digits)), "0")


UNQUOTED_LAST_BOUNDARY = re.compile(
    r'^multipart/related;type="application/rlmi\+xml";start="<[^<>"]+>";'
    r"boundary=[0-9A-Za-z'()+_,./:=?-]{1,70}$"
)
