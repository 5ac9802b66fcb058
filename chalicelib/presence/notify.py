"""NOTIFY bodies for a list subscription: RLMI + PIDF parts, versioned, chunked and encoded.

`build()` turns the state of some resources into one or more bodies: the first full-state when
asked (always at version 0), the rest partial (`fullState="false"`), each holding at most
`notify_limit` users and, when it can be split, at most `max_bytes` on the wire (after deflate).
Resources are kept in the subscriber's order and packed greedily, so a long list becomes one
full-state body followed by partial ones that add the remaining resources. The live-update code
calls `build(..., full_state=False)` with just the resources that changed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from chalicelib import ids as ids_module
from chalicelib import settings
from chalicelib.ids import IdSource
from chalicelib.presence import multipart, pidf, rlmi
from chalicelib.presence.multipart import Part, Profile
from chalicelib.presence.pidf import USER_DEFAULT, PresenceStatus

# Headroom kept when predicting how far a deflated chunk may grow before measuring it.
_RATIO_SAFETY = 1.08
# First guess of deflated/plain for our bodies (measured ~7%): a chunk is sized from it, then
# measured; a wrong guess costs one more compression, guessing avoids compressing everything.
_PRIOR_RATIO = 0.075
_MAX_SHRINKS = 12
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}$")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class User:
    """A resource that is a user: its account's SIP URI and what may be said of its status."""

    contact: str  # "sip:username@domain"
    status: PresenceStatus = USER_DEFAULT


@dataclass(frozen=True, slots=True)
class ResourceState:
    """One resource of the list as the phone should see it: a user, or not (None)."""

    uri: str  # the subscriber's string, byte for byte
    user: User | None = None


@dataclass(frozen=True, slots=True)
class BodyOptions:
    """How bodies are framed and split. `ids` and `now` are injectable for golden tests."""

    profile: Profile = multipart.LINPHONE
    deflate: bool = False
    notify_limit: int = 200
    max_bytes: int = 12000
    # How a non-user is written: "bare" = a <resource> with no instance (what Linphone reads as
    # "not a user"); "terminated" = an instance state="terminated" reason="noresource" (RFC 4662).
    non_user: Literal["bare", "terminated"] = "bare"
    ids: IdSource = field(default=ids_module.random_ids)
    now: Callable[[], datetime] = _utcnow

    @classmethod
    def from_settings(cls, **overrides: object) -> BodyOptions:
        cfg = settings.get()
        values: dict[str, object] = {
            "notify_limit": cfg.notify_limit,
            "max_bytes": cfg.notify_max_bytes,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class NotifyBody:
    """One NOTIFY body ready for the wire, with the headers that describe it."""

    body: bytes
    content_type: str
    content_encoding: str | None
    version: int
    full_state: bool
    uris: tuple[str, ...]  # resources named in this body, in order
    users: int
    plain_bytes: int

    @property
    def headers(self) -> dict[str, str]:
        out = {"Content-Type": self.content_type}
        if self.content_encoding:
            out["Content-Encoding"] = self.content_encoding
        return out


@dataclass(frozen=True, slots=True)
class _Item:
    uri: str
    fragment: bytes  # the <resource> element
    part: bytes | None  # the PIDF part with its delimiter line, for a user
    size: int  # bytes it adds to a body: fragment, part and the CRLF before the part


def _item(uri: str, fragment: bytes, part: bytes | None) -> _Item:
    return _Item(uri, fragment, part, len(fragment) + (len(part) + 2 if part is not None else 0))


def _cid_domain(list_uri: str) -> str:
    """The host of the list URI, used as the right-hand side of Content-IDs (RFC 2392)."""
    rest = list_uri.split(":", 1)[1] if ":" in list_uri else list_uri
    host = re.split(r"[;:?>]", rest.rsplit("@", 1)[-1], maxsplit=1)[0]
    return host if _HOST.match(host) else settings.get().sip_domain


def _boundary(options: BodyOptions, resources: Sequence[ResourceState]) -> str:
    # The only text in a body we do not write ourselves is the URIs and notes: a boundary
    # found there would cut a part short, so draw another (never happens with random tokens).
    texts = [r.uri for r in resources]
    for r in resources:
        if r.user is not None:
            texts.append(r.user.contact)
            texts.extend(n.text for n in r.user.status.notes)
    foreign = "\n".join(texts)
    while True:
        boundary = multipart.new_boundary(options.ids)
        if boundary not in foreign:
            return boundary


def _items(
    resources: Sequence[ResourceState],
    options: BodyOptions,
    boundary: str,
    domain: str,
    now: datetime,
) -> list[_Item]:
    profile = options.profile
    # The part header is the same for every user but its cid: built once (hot loop).
    pidf_type = pidf.CONTENT_TYPE if profile.charset_param else pidf.MEDIA_TYPE
    head = multipart.part_bytes(Part("\x00", pidf_type, b""), profile, boundary).decode()
    before_cid, after_cid = head.split("\x00")
    items: list[_Item] = []
    for state in resources:
        if profile.drop_tel_resources and state.uri[:4].lower() == "tel:":
            continue
        if state.user is None:
            instance = (
                rlmi.Instance("terminated", reason="noresource")
                if options.non_user == "terminated"
                else None
            )
            items.append(_item(state.uri, rlmi.resource(state.uri, instance).encode(), None))
            continue
        cid = multipart.new_cid(options.ids, domain)
        doc = pidf.document(state.uri, state.user.contact, state.user.status, now=now)
        part = (before_cid + cid + after_cid + doc).encode()
        fragment = rlmi.resource(state.uri, rlmi.Instance("active", cid)).encode()
        items.append(_item(state.uri, fragment, part))
    return items


def _assemble(
    items: Sequence[_Item],
    list_uri: str,
    version: int,
    full_state: bool,
    options: BodyOptions,
    boundary: str,
    domain: str,
) -> tuple[bytes, str]:
    root_cid = multipart.new_cid(options.ids, domain)
    document = b"".join(
        (
            rlmi.head(list_uri, version, full_state).encode(),
            *(i.fragment for i in items),
            rlmi.TAIL.encode(),
        )
    )
    rlmi_type = rlmi.CONTENT_TYPE if options.profile.charset_param else rlmi.MEDIA_TYPE
    root = multipart.part_bytes(Part(root_cid, rlmi_type, document), options.profile, boundary)
    parts = [root, *(i.part for i in items if i.part is not None)]
    body = multipart.CRLF.join(parts) + f"\r\n--{boundary}--\r\n".encode("ascii")
    content_type = options.profile.content_type("application/rlmi+xml", root_cid, boundary)
    return body, content_type


def _take(items: Sequence[_Item], start: int, limit_users: int, plain_room: float) -> int:
    """End index of the next chunk: as many items as fit the user cap and the room left for
    plain bytes."""
    users = 0
    size = 0
    end = start
    while end < len(items):
        item = items[end]
        is_user = item.part is not None
        if end > start and ((is_user and users + 1 > limit_users) or size + item.size > plain_room):
            break
        users += is_user
        size += item.size
        end += 1
    return end


def build(
    list_uri: str,
    resources: Sequence[ResourceState],
    *,
    version: int,
    full_state: bool = True,
    options: BodyOptions | None = None,
) -> list[NotifyBody]:
    """The NOTIFY bodies for `resources`, numbered from `version` (the next is version+len)."""
    options = options or BodyOptions.from_settings()
    if version < 0:
        raise ValueError("version must be >= 0")
    full_state = full_state or version == 0  # RFC 4662: a subscription starts with full state
    now = options.now()
    domain = _cid_domain(list_uri)
    boundary = _boundary(options, resources)
    items = _items(resources, options, boundary, domain, now)
    if not items and not full_state:
        return []
    limit_users = max(1, options.notify_limit)
    max_bytes = max(1, options.max_bytes)
    ratio = _PRIOR_RATIO * _RATIO_SAFETY if options.deflate else 1.0
    bodies: list[NotifyBody] = []
    start = 0
    while start < len(items) or not bodies:
        plain_room = max_bytes / ratio
        end = _take(items, start, limit_users, plain_room)
        chunk_version = version + len(bodies)
        chunk_full = full_state and not bodies
        for _ in range(_MAX_SHRINKS):
            plain, content_type = _assemble(
                items[start:end], list_uri, chunk_version, chunk_full, options, boundary, domain
            )
            wire, encoding = multipart.encode(plain, options.deflate)
            if len(wire) <= max_bytes or end - start <= 1:
                break
            # Too big: shrink in proportion to the overshoot, then measure again.
            keep = int((end - start) * max_bytes / len(wire) * 0.95)
            end = start + max(1, min(keep, end - start - 1))
        if options.deflate:
            ratio = max(len(wire) / len(plain), 0.01) * _RATIO_SAFETY
        chunk = items[start:end]
        bodies.append(
            NotifyBody(
                body=wire,
                content_type=content_type,
                content_encoding=encoding,
                version=chunk_version,
                full_state=chunk_full,
                uris=tuple(i.uri for i in chunk),
                users=sum(i.part is not None for i in chunk),
                plain_bytes=len(plain),
            )
        )
        start = end
    return bodies
