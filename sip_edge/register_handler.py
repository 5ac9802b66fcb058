"""REGISTER (RFC 3261 §10.3): turn the request's Contacts into a registrar call and answer with
the bindings the registrar holds.
"""

from __future__ import annotations

import time

from chalicelib import edge_contract as contract
from sip_edge.dialog import Peer
from sip_edge.handling import EdgeServices, Reject, raise_function_error, within_amplification_limit
from sip_edge.sip.message import Request, Response, make_response
from sip_edge.sip.values import parse_delta_seconds


def _contact_expires(value: str | None) -> int | None:
    """RFC 3261 §10.2.1: the expires contact parameter is delta-seconds; anything else is 400."""
    return None if value is None else parse_delta_seconds(value, "Contact expires parameter")


class RegisterHandler:
    """Answers an authenticated REGISTER through the `sip_registrar` function."""

    def __init__(self, edge: EdgeServices) -> None:
        self.edge = edge

    def check(self, request: Request) -> None:
        """Before any challenge: RFC 3261 §10.3 step 3 takes the address-of-record from To,
        which must be a SIP or SIPS URI."""
        if request.to.uri.scheme.lower() not in ("sip", "sips"):
            raise Reject(400, "To is not a sip or sips URI")

    async def handle(self, request: Request, peer: Peer, identity: str) -> Response:
        contacts = request.contacts
        payload: contract.RegisterRequest = {
            "op": "register",
            "aor": identity,
            "call_id": request.call_id,
            "cseq": request.cseq.seq,
            "expires_header": request.expires,
            "wildcard": contacts is None,
            "source": f"{peer.transport}:{peer.host}:{peer.port}",
            "edge_id": self.edge.edge_id,
            "user_agent": (request.headers.get("User-Agent") or "")[: contract.USER_AGENT_MAX],
            "contacts": [
                {
                    "uri": c.uri.raw,
                    "expires": _contact_expires(c.param("expires")),
                    "instance": c.param("+sip.instance"),
                    "params": "".join(
                        f";{k}" if v is None else f";{k}={v}"
                        for k, v in c.params.items()
                        if k not in ("expires", "q")
                    ),
                }
                for c in contacts or []
            ],
        }
        if not contacts and contacts is not None:
            payload["op"] = "bindings"
        result = await contract.SIP_REGISTRAR.ask(self.edge.functions, payload)
        if "error" in result:
            raise_function_error(result)
            raise Reject(500)  # an empty refusal: the function is broken
        date = ("Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()))
        # The request's own bindings first: over UDP the others follow only while the 200 stays
        # within the amplification limit (a phone needs its own expires; the rest is a courtesy).
        own = {c.uri.raw for c in contacts or []}
        ordered = sorted(result["bindings"], key=lambda b: b["uri"] not in own)
        headers: list[tuple[str, str]] = []
        for b in ordered:
            contact = ("Contact", f"<{b['uri']}>{b['params']};expires={b['expires']}")
            size = len(make_response(request, 200, None, [*headers, contact, date]).to_bytes())
            if b["uri"] not in own and not within_amplification_limit(request, peer, size):
                self.edge.stats["contacts_left_out"] = (
                    self.edge.stats.get("contacts_left_out", 0) + 1
                )
                continue
            headers.append(contact)
        return make_response(request, 200, None, [*headers, date])
