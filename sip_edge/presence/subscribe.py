"""A SUBSCRIBE, read: what the edge refuses before anything else, the expiry it grants, the
dialog a new one opens, the lookup for that dialog's first NOTIFY, and the 200 that answers it.
Plain functions of the request and the settings (RFC 6665, RFC 4662, RFC 5367).
"""

from __future__ import annotations

import base64
import re

from chalicelib import edge_contract as contract
from chalicelib import settings
from chalicelib.edge_contract import subscription_id
from sip_edge.dialog import Peer, SubscriptionDialog, new_local_tag
from sip_edge.handling import Reject
from sip_edge.sip.headers import split_commas
from sip_edge.sip.message import Request, Response, make_response

LIST_TYPE = "application/resource-lists+xml"


def check(request: Request, cfg: settings.Settings) -> None:
    """Refuse (Reject) what no account could make acceptable: checked before the challenge."""
    event = request.event
    if event is None:
        raise Reject(400, "Missing Event header")
    if event.package.lower() != "presence":
        raise Reject(489, None, [("Allow-Events", "presence")])
    expires = request.expires
    if expires is not None and 0 < expires < cfg.subscribe_min_expires:
        raise Reject(423, None, [("Min-Expires", str(cfg.subscribe_min_expires))])
    if request.to.tag is None and request.body:
        ctype = request.content_type
        if ctype is None or ctype.mime.lower() != LIST_TYPE:
            raise Reject(415, None, [("Accept", LIST_TYPE)])
        if "recipient-list-subscribe" not in {r.lower() for r in request.require}:
            raise Reject(421, None, [("Require", "recipient-list-subscribe")])
        if "eventlist" not in {s.lower() for s in request.supported}:
            raise Reject(421, None, [("Require", "eventlist")])
    if any(e not in ("deflate", "identity") for e in request.content_encoding):
        raise Reject(415, None, [("Accept-Encoding", "deflate")])


def granted_expires(request: Request, cfg: settings.Settings) -> int:
    expires = request.expires
    if expires is None:
        return cfg.subscribe_default_expires
    return min(expires, cfg.subscribe_max_expires)


def profile_for(request: Request, cfg: settings.Settings) -> str:
    """How the subscriber's NOTIFYs are framed: "linphone" (what Linphone 5.1 accepts) or "rfc"."""
    if cfg.sip_profile in ("linphone", "rfc"):
        return cfg.sip_profile
    agent = (request.headers.get("User-Agent") or "").lower()
    return "linphone" if any(a in agent for a in cfg.sip_linphone_agents) else "rfc"


def new_dialog(
    request: Request, peer: Peer, identity: str, expires: int, now: float, cfg: settings.Settings
) -> tuple[SubscriptionDialog, contract.PresenceLookupRequest]:
    """The dialog a SUBSCRIBE without a To tag opens (not yet the edge's), and the lookup of
    its first NOTIFY: its list (the body), or its one resource (the request URI)."""
    contacts = request.contacts or []
    if not contacts:
        raise Reject(400, "Missing Contact header")
    accept = {e.lower() for v in request.headers.get_all("Accept-Encoding")
              for e in split_commas(v)}  # fmt: skip
    local_tag = new_local_tag()
    dialog = SubscriptionDialog(
        subscription_id=subscription_id(request.call_id, local_tag),
        call_id=request.call_id,
        local_tag=local_tag,
        remote_tag=request.from_.tag or "",
        local_uri=_without_tag(request.headers.get("To") or ""),
        remote_uri=_without_tag(request.headers.get("From") or ""),
        remote_target=contacts[0].uri.raw,
        route_set=list(request.headers.get_all("Record-Route")),
        subscriber=identity,
        peer=peer,
        expires_at=now + expires,
        event_id=request.event.id if request.event else None,
        profile=profile_for(request, cfg),
        accept_deflate="deflate" in accept,
        is_list=bool(request.body),
        device=contacts[0].param("+sip.instance") or contacts[0].uri.raw,
        user_agent=(request.headers.get("User-Agent") or "")[: contract.USER_AGENT_MAX],
        remote_cseq=request.cseq.seq,
    )
    lookup: contract.PresenceLookupRequest = {
        "subscriber": identity,
        "profile": dialog.profile,
        "accept_encoding": sorted(accept),
        "version": 0,
        "list_uri": request.to.uri.raw,
    }
    if dialog.is_list:
        lookup["list_b64"] = base64.b64encode(request.body).decode()
        lookup["content_encoding"] = ",".join(request.content_encoding) or None
    else:
        lookup["entries"] = [request.uri]
        lookup["single"] = True
    return dialog, lookup


def accepted(request: Request, dialog: SubscriptionDialog, expires: int, contact: str) -> Response:
    """The 200 to a SUBSCRIBE of `dialog`, new or refresh (RFC 6665 §4.2.1)."""
    headers = [("Expires", str(expires)), ("Contact", contact)]
    if dialog.is_list:
        headers.append(("Require", "eventlist"))
    return make_response(request, 200, None, headers, to_tag=dialog.local_tag)


def _without_tag(value: str) -> str:
    return re.sub(r";\s*tag\s*=\s*[^;,\s]+", "", value, flags=re.I).strip()
