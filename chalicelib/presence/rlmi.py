"""RLMI documents (RFC 4662 §5): the first part of a list NOTIFY, naming each resource.

Resource URIs are the subscriber's strings, echoed byte for byte. A user gets one active
instance pointing (cid) at its PIDF part; a resource that is not a user gets no instance, which
Linphone reads as "no presence". No `<name>` element is ever written: Linphone would rename the
phone's contact with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from chalicelib import ids
from chalicelib.presence.pidf import XML_DECL, attr

NS = "urn:ietf:params:xml:ns:rlmi"
MEDIA_TYPE = "application/rlmi+xml"
CONTENT_TYPE = f'{MEDIA_TYPE};charset="UTF-8"'

InstanceState = Literal["active", "pending", "terminated"]
#: RFC 6665 reasons usable on a terminated instance.
Reason = Literal["deactivated", "probation", "rejected", "timeout", "giveup", "noresource"]


def instance_id(uri: str) -> str:
    """The stable id of a resource's instance: the same across NOTIFYs of a subscription."""
    return ids.stable("instance\x00" + uri, 10)


@dataclass(frozen=True, slots=True)
class Instance:
    state: InstanceState
    cid: str | None = None  # Content-ID of the part, without angle brackets
    reason: Reason | None = None


def resource(uri: str, instance: Instance | None = None) -> str:
    """One `<resource>` element."""
    if instance is None:
        return f'<resource uri="{attr(uri)}"/>'
    extra = ""
    if instance.cid is not None:
        extra += f' cid="{attr(instance.cid)}"'
    if instance.reason is not None:
        extra += f' reason="{instance.reason}"'
    return (
        f'<resource uri="{attr(uri)}"><instance id="{instance_id(uri)}"'
        f' state="{instance.state}"{extra}/></resource>'
    )


def head(list_uri: str, version: int, full_state: bool) -> str:
    """Everything before the resources."""
    full = "true" if full_state else "false"
    return (
        f'{XML_DECL}<list xmlns="{NS}" uri="{attr(list_uri)}" version="{version}"'
        f' fullState="{full}">'
    )


TAIL = "</list>"
