"""PIDF documents (RFC 3863) with the RFC 4479 data model and RPID (RFC 4480) for one user.

A user's document always says `<basic>open</basic>`-or-closed plus a `<contact>` (Linphone aborts
on a phone-number resource whose PIDF has no contact) and a timestamp. `PresenceStatus` carries
what is known about the user; the default, `USER_DEFAULT`, is "a user, no live status": open with
an `<rpid:away/>` activity, as Flexisip sends. Live status (PUBLISH, REGISTER) passes its own.
Documents are written from templates, escaped by hand: lxml would cost ~20 µs per document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal

from chalicelib import ids

NS = "urn:ietf:params:xml:ns:pidf"
NS_DM = "urn:ietf:params:xml:ns:pidf:data-model"
NS_RPID = "urn:ietf:params:xml:ns:pidf:rpid"
MEDIA_TYPE = "application/pidf+xml"
# With a charset parameter, as Linphone 5.1 was seen to accept in list parts. Strict parsers
# (baresip 1.0 compares the whole header value) refuse it: single-resource NOTIFYs and the rfc
# profile say MEDIA_TYPE alone, the XML declaration of each document giving its encoding.
CONTENT_TYPE = f'{MEDIA_TYPE};charset="UTF-8"'
XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'

_ACTIVITY = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
_LANG = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$")

# Attribute values keep tabs and line ends through attribute-value normalisation only as
# character references: the subscriber's URI must come back byte for byte.
_ATTR = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\t": "&#9;",
        "\n": "&#10;",
        "\r": "&#13;",
    }
)
_TEXT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})


# Most values need no escaping; finding that out is ten times cheaper than translating.
_ATTR_SPECIAL = re.compile(r'[&<>"\t\n\r]')
_TEXT_SPECIAL = re.compile(r"[&<>\r]")


def attr(value: str) -> str:
    """`value` escaped for a double-quoted XML attribute."""
    return value.translate(_ATTR) if _ATTR_SPECIAL.search(value) else value


def text(value: str) -> str:
    """`value` escaped for XML character data."""
    return value.translate(_TEXT) if _TEXT_SPECIAL.search(value) else value


@lru_cache(maxsize=256)
def timestamp(moment: datetime) -> str:
    """RFC 3339 UTC timestamp with second precision, as Flexisip and the fixtures write it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Note:
    text: str
    lang: str | None = None


@dataclass(frozen=True, slots=True)
class PresenceStatus:
    """What a watcher may learn about a user (RFC 4479 service + person).

    `activities` are RFC 4480 activity names (`away`, `busy`, `on-the-phone`...); an open
    status with none reads as "Online" in Linphone, with one as "Away/Busy", closed as "Offline".
    `since` is when the status was set; None means the build time.
    """

    basic: Literal["open", "closed"] = "open"
    activities: tuple[str, ...] = ("away",)
    notes: tuple[Note, ...] = ()
    since: datetime | None = None

    def __post_init__(self) -> None:
        if self.basic not in ("open", "closed"):
            raise ValueError(f"basic status must be open or closed, not {self.basic!r}")
        for activity in self.activities:
            if not _ACTIVITY.match(activity):
                raise ValueError(f"not an RPID activity name: {activity!r}")
        for note in self.notes:
            if note.lang is not None and not _LANG.match(note.lang):
                raise ValueError(f"not a language tag: {note.lang!r}")


#: "Is a user, no live status known": open + contact + timestamp + <rpid:away/> (Flexisip's form).
USER_DEFAULT = PresenceStatus()
#: Registered, nothing published.
ONLINE = PresenceStatus(activities=())


def document(
    entity: str,
    contact: str,
    status: PresenceStatus = USER_DEFAULT,
    *,
    now: datetime,
) -> str:
    """The PIDF document of one user, `entity` being the subscriber's own resource URI."""
    when = timestamp(status.since or now)
    # Stable per account, so that watchers composing tuples over time see the same ones.
    key = ids.stable("pidf\x00" + contact, 15)
    tuple_id, person_id = key[:8], "y" + key[8:]
    person = ""
    if status.activities:
        person += (
            "<rpid:activities>"
            + "".join(f"<rpid:{a}/>" for a in status.activities)
            + "</rpid:activities>"
        )
    for note in status.notes:
        lang = f' xml:lang="{attr(note.lang)}"' if note.lang else ""
        person += f"<dm:note{lang}>{text(note.text)}</dm:note>"
    return (
        f'{XML_DECL}<presence xmlns="{NS}" xmlns:dm="{NS_DM}" xmlns:rpid="{NS_RPID}"'
        f' entity="{attr(entity)}"><tuple id="{tuple_id}"><status><basic>{status.basic}'
        f"</basic></status><contact>{text(contact)}</contact><timestamp>{when}</timestamp>"
        f'</tuple><dm:person id="{person_id}">{person}<dm:timestamp>{when}</dm:timestamp>'
        "</dm:person></presence>"
    )
