"""PUBLISH (RFC 3903): check the event package and body, then store the presence document
through the functions and answer with its entity tag.
"""

from __future__ import annotations

import base64

from chalicelib import edge_contract as contract
from sip_edge.dialog import Peer
from sip_edge.handling import EdgeServices, Reject, raise_function_error
from sip_edge.sip.grammar import TOKEN_FULL
from sip_edge.sip.message import Request, Response, make_response


class PublishHandler:
    """Answers an authenticated PUBLISH through the `sip_publish` function."""

    def __init__(self, edge: EdgeServices) -> None:
        self.edge = edge

    async def handle(self, request: Request, peer: Peer, identity: str) -> Response:
        event = request.event
        if event is None or event.package.lower() != "presence":
            raise Reject(489, None, [("Allow-Events", "presence")])
        if request.body:
            ctype = request.content_type
            if ctype is None or ctype.mime.lower() != "application/pidf+xml":
                raise Reject(415, None, [("Accept", "application/pidf+xml")])
            if request.content_encoding:
                raise Reject(415, None, [("Accept-Encoding", "identity")])
        if_match = request.headers.get("SIP-If-Match")
        if if_match is not None and not TOKEN_FULL.match(if_match.strip()):
            raise Reject(400, "Bad SIP-If-Match")  # RFC 3903 §11.3.2: entity-tag = token
        publish: contract.PublishRequest = {
            "op": "publish",
            "call_id": request.call_id,
            "cseq": request.cseq.seq,
            "aor": identity,
            "if_match": if_match.strip() if if_match else None,
            "expires": request.expires,
            "body_b64": base64.b64encode(request.body).decode() if request.body else None,
        }
        result = await contract.SIP_PUBLISH.ask(self.edge.functions, publish)
        if "error" in result:
            raise_function_error(result)
            raise Reject(500)  # an empty refusal: the function is broken
        headers = [("Expires", str(result["expires"]))]
        if result["expires"]:
            headers.insert(0, ("SIP-ETag", result["etag"]))
        return make_response(request, 200, None, headers)
