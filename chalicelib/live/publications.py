"""Published presence (RFC 3903 PUBLISH): entity tags, expiry and the status a user publishes.

A PIDF body is read with a hardened parser and kept only as a `PresenceStatus` (basic,
RPID activities, notes): watchers never receive the publisher's raw XML.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Key
from lxml import etree

from chalicelib import clock, safe_xml, settings, tables
from chalicelib.edge_contract import ErrorAnswer, PublishAnswer, PublishRequest
from chalicelib.errors import DomainError
from chalicelib.presence import pidf

_NS = {"p": pidf.NS, "dm": pidf.NS_DM, "rpid": pidf.NS_RPID}
_MAX_NOTES = 4
_MAX_NOTE_CHARS = 256
_MAX_ACTIVITIES = 4


@dataclass(frozen=True)
class Publication:
    aor: str
    etag: str
    expires_at: int
    status: pidf.PresenceStatus


def parse_pidf(body: bytes, aor: str) -> pidf.PresenceStatus:
    """The status a PIDF publishes for `aor`; DomainError when it is not ours or not PIDF."""
    if len(body) > settings.get().publish_max_body_bytes:
        raise DomainError("body_too_large", "PIDF larger than the publication limit")
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise DomainError("publication_invalid", "DTDs and entities are not allowed")
    try:
        root = etree.fromstring(body, safe_xml.parser())
    except etree.XMLSyntaxError as exc:
        raise DomainError("publication_invalid", f"not well-formed XML: {exc}") from None
    if root.tag != f"{{{pidf.NS}}}presence":
        raise DomainError("publication_invalid", "not a PIDF <presence> document")
    entity = (root.get("entity") or "").split(":", 1)[-1].split(";", 1)[0].lower()
    if entity != aor.lower():
        raise DomainError("publication_not_yours", "the PIDF entity is not the publisher")
    basics = [b.strip() for b in root.xpath("p:tuple/p:status/p:basic/text()", namespaces=_NS)]
    basic = "open" if "open" in basics or not basics else "closed"
    activities: list[str] = []
    for element in root.xpath(".//rpid:activities/*", namespaces=_NS):
        name = etree.QName(element).localname
        if etree.QName(element).namespace == pidf.NS_RPID and name != "unknown":
            activities.append(name)
    notes = []
    for element in root.xpath(".//p:note | .//dm:note", namespaces=_NS)[:_MAX_NOTES]:
        text = (element.text or "").strip()[:_MAX_NOTE_CHARS]
        lang = element.get("{http://www.w3.org/XML/1998/namespace}lang")
        if text:
            notes.append(pidf.Note(text, lang))
    try:
        return pidf.PresenceStatus(
            basic=basic,  # type: ignore[arg-type]
            activities=tuple(dict.fromkeys(activities))[:_MAX_ACTIVITIES],
            notes=tuple(dict.fromkeys(notes)),
        )
    except ValueError as exc:
        raise DomainError("publication_invalid", str(exc)) from None


def _granted(expires: int | None) -> int:
    cfg = settings.get()
    if expires is None:
        return cfg.publish_default_expires
    if 0 < expires < cfg.publish_min_expires:
        raise DomainError(
            "interval_too_brief",
            f"expires {expires} is under the minimum {cfg.publish_min_expires}",
            headers={"Min-Expires": str(cfg.publish_min_expires)},
        )
    return min(expires, cfg.publish_max_expires)


def _status_item(status: pidf.PresenceStatus) -> dict[str, Any]:
    return {
        "basic": status.basic,
        "activities": list(status.activities),
        "notes": [{"text": n.text, "lang": n.lang} for n in status.notes],
    }


def _status_of(item: dict[str, Any]) -> pidf.PresenceStatus:
    return pidf.PresenceStatus(
        basic=item.get("basic", "open"),
        activities=tuple(item.get("activities", [])),
        notes=tuple(pidf.Note(n["text"], n.get("lang")) for n in item.get("notes", [])),
    )


def publish(
    aor: str,
    *,
    if_match: str | None,
    expires: int | None,
    body: bytes | None,
    now: float | None = None,
) -> PublishAnswer:
    """Apply one PUBLISH (RFC 3903 §6): initial, refresh, modify or remove.

    Returns {"etag", "expires"}; raises DomainError (412 unknown etag, 423, 400, 403).
    """
    now = clock.now() if now is None else now
    table = tables.table(tables.PUBLICATIONS)
    granted = _granted(expires)
    previous = None
    if if_match is not None:
        previous = table.get_item(Key={"aor": aor, "etag": if_match}, ConsistentRead=True).get(
            "Item"
        )
        if previous is None or int(previous["expires_at"]) <= now:
            raise DomainError("unknown_etag", "no publication with that entity tag")
    elif not body:
        raise DomainError("publication_invalid", "an initial PUBLISH needs a PIDF body")
    if granted == 0:
        if previous is not None:
            table.delete_item(Key={"aor": aor, "etag": if_match})
        return {"etag": if_match or "", "expires": 0}
    if body:
        status = parse_pidf(body, aor)
    else:
        assert previous is not None  # no body is a refresh: the checks above found `previous`
        status = _status_of(previous["status"])
    etag = secrets.token_urlsafe(12)  # RFC 3903 §6: a new tag for every successful PUBLISH
    table.put_item(
        Item={
            "aor": aor,
            "etag": etag,
            "expires_at": int(now) + granted,
            "status": _status_item(status),
            "updated_at": int(now),
        }
    )
    if previous is not None:
        table.delete_item(Key={"aor": aor, "etag": if_match})
    return {"etag": etag, "expires": granted}


def current(aor: str, now: float | None = None) -> Publication | None:
    """The newest live publication of an account, if any."""
    now = clock.now() if now is None else now
    items = tables.table(tables.PUBLICATIONS).query(KeyConditionExpression=Key("aor").eq(aor))[
        "Items"
    ]
    live = [i for i in items if int(i["expires_at"]) > now]
    if not live:
        return None
    newest = max(live, key=lambda i: int(i.get("updated_at", 0)))
    return Publication(aor, newest["etag"], int(newest["expires_at"]), _status_of(newest["status"]))


def handle(payload: PublishRequest) -> PublishAnswer | ErrorAnswer:
    """The `sip_publish` function: {aor, if_match, expires, body_b64} -> {etag, expires}."""
    import base64

    encoded = payload.get("body_b64")
    body = base64.b64decode(encoded) if encoded else None
    try:
        return publish(
            str(payload["aor"]),
            if_match=payload.get("if_match"),
            expires=payload.get("expires"),
            body=body,
        )
    except DomainError as exc:
        return exc.to_function_answer()
