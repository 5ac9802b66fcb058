"""The provisioning routes: the XML documents Linphone apps fetch at start (`[misc] config-uri`)
and QR codes of their links.

`GET /provisioning` is the document for people without an account (fixed link, printed by
`make run`); `GET /provisioning/{token}` an account's, from a single-use link its owner asked
for (`POST /v1/accounts/me/provisioning`, or the apps' `accounts/me/provision`). The Linphone SDK
applies only a 200, whatever its Content-Type; 5.1 sends neither an Accept nor the
`X-Linphone-Provisioning` header Linphone 6 adds, so neither is required.
`GET /provisioning/qrcode` and `/provisioning/qrcode/{token}` draw a link (PNG, or SVG with
`?format=svg`) without using it.
"""

from __future__ import annotations

import base64

from chalice import Response
from chalice.app import Request

from chalicelib import clock
from chalicelib.accounts import provisioning, tokens
from chalicelib.api import http_api
from chalicelib.errors import DomainError

#: The anonymous document may be cached briefly; an account's never (it holds its HA1).
_PUBLIC = {"Cache-Control": "public, max-age=300"}
_PRIVATE = {"Cache-Control": "no-store"}


def _xml(document: bytes, headers: dict[str, str]) -> Response:
    return Response(
        body=document.decode(),
        status_code=200,
        headers={**headers, "Content-Type": provisioning.CONTENT_TYPE},
    )


def anonymous(request: Request) -> Response:
    return _xml(provisioning.anonymous_document(http_api.public_base_url(request)), _PUBLIC)


def by_link(request: Request, token: str) -> Response:
    document = provisioning.fetch(
        token,
        http_api.public_base_url(request),
        source=http_api.client_ip(request),
        user_agent=request.headers.get("user-agent") or "",
    )
    return _xml(document, _PRIVATE)


def qrcode(request: Request, token: str | None = None) -> Response:
    """The QR code of the anonymous link, or of an account's link (404 unless it is a live
    one: a QR code never shows a dead link)."""
    base = http_api.public_base_url(request)
    if token is None:
        text, headers = provisioning.anonymous_url(base), _PUBLIC
    else:
        if tokens.peek(tokens.PROVISIONING, token) is None:
            raise DomainError("not_found", "no such provisioning link")
        text, headers = provisioning.link_url(base, token), _PRIVATE
    query: dict[str, str] = dict(request.query_params or {})
    wanted = (query.get("format") or "png").lower()
    if wanted == "svg":
        return Response(
            body=provisioning.qr_svg(text),
            status_code=200,
            headers={**headers, "Content-Type": "image/svg+xml"},
        )
    if wanted != "png":
        raise DomainError("invalid_field", "format: expected png or svg")
    return Response(
        body=provisioning.qr_png(text),
        status_code=200,
        headers={**headers, "Content-Type": "image/png"},
    )


def link_json(request: Request, link: provisioning.Link) -> dict[str, object]:
    """What the REST API answers for a new link: the URL, its expiry, its QR code (inline
    SVG as a data URI, and the image routes)."""
    base = http_api.public_base_url(request)
    svg = base64.b64encode(provisioning.qr_svg(link.url).encode()).decode()
    return {
        "url": link.url,
        "expires_at": clock.iso(link.expires_at),
        "expires_in": max(0, link.expires_at - clock.now_int()),
        "qrcode_png": f"{provisioning.anonymous_url(base)}/qrcode/{link.token}",
        "qrcode_svg": f"{provisioning.anonymous_url(base)}/qrcode/{link.token}?format=svg",
        "qrcode_svg_data": "data:image/svg+xml;base64," + svg,
    }
