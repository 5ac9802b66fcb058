"""REST plumbing shared by the routes: strict JSON bodies and the error envelope."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Set
from typing import Any

from chalice import Response
from chalice.app import Request

from chalicelib import settings
from chalicelib.errors import DomainError
from chalicelib.observability import logger
from chalicelib.resilience import deadline, is_unavailable, retry_after

#: Routes accept any Content-Type so that a wrong one gets our 415 envelope, not Chalice's.
ANY_CONTENT_TYPE = ["*/*"]
XML_CONTENT_TYPES = ("text/xml", "application/xml")
#: Chalice matches the route's content types before the view runs; "*/*" lets a wrong one
#: reach the XML-RPC view and get a fault instead of Chalice's JSON 415.
XMLRPC_ROUTE_CONTENT_TYPES = [*XML_CONTENT_TYPES, "*/*"]


def source_ip(request: Request) -> str:
    """The client address API Gateway (or chalice local and the test client) saw."""
    identity = (request.context or {}).get("identity") or {}
    return str(identity.get("sourceIp") or "unknown")


def client_ip(request: Request) -> str:
    """The client's address for abuse limits: the source address, unless it is one of
    HTTP_TRUSTED_PROXIES; then the last X-Forwarded-For address that is not (each proxy
    appends the address it saw, so earlier entries may be forged by the client)."""
    seen = source_ip(request)
    trusted = settings.get().http_trusted_proxies
    if seen not in trusted:
        return seen
    forwarded = [
        a.strip() for a in (request.headers.get("x-forwarded-for") or "").split(",") if a.strip()
    ]
    for address in reversed(forwarded):
        if address not in trusted:
            return address
    return seen


def public_base_url(request: Request) -> str:
    """The REST API's public base URL as phones reach it (links in provisioning documents, QR
    codes, the apps' assistant URL): `PUBLIC_URL`, else this request's scheme (API Gateway's
    X-Forwarded-Proto), Host, and the stage path API Gateway puts before the routes."""
    configured = settings.get().public_url
    if configured:
        return configured.rstrip("/")
    scheme = (request.headers.get("x-forwarded-proto") or "http").split(",")[0].strip()
    host = request.headers.get("host") or "localhost"
    full = str((request.context or {}).get("path") or request.path)
    prefix = full[: -len(request.path)] if request.path and full.endswith(request.path) else ""
    return f"{scheme}://{host}{prefix.rstrip('/')}"


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower-case ("" when absent)."""
    return (request.headers.get("content-type") or "").split(";")[0].strip().lower()


def body_bytes(request: Request) -> bytes:
    """The request body as bytes (chalice's `raw_body` is typed `str | bytes`)."""
    raw = request.raw_body
    return raw.encode() if isinstance(raw, str) else raw


def error_response(exc: DomainError) -> Response:
    return Response(
        body=exc.to_json(),
        status_code=exc.http_status,
        headers={"Content-Type": "application/json", **exc.headers},
    )


def json_body(
    raw: bytes | None, *, required: Set[str], optional: Set[str] = frozenset()
) -> dict[str, Any]:
    """Parse a JSON object body, rejecting oversized, malformed and unknown-field bodies."""
    raw = raw or b""
    if len(raw) > settings.get().max_body_bytes:
        raise DomainError("body_too_large", f"body larger than {settings.get().max_body_bytes}")
    try:
        data = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DomainError("invalid_json", f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise DomainError("invalid_json", "body nests too deeply") from None
    if not isinstance(data, dict):
        raise DomainError("invalid_json", "body must be a JSON object")
    unknown = set(data) - required - optional
    if unknown:
        raise DomainError("unknown_field", f"unknown field(s): {', '.join(sorted(unknown))}")
    missing = required - set(data)
    if missing:
        raise DomainError("missing_field", f"missing field(s): {', '.join(sorted(missing))}")
    return data


def rest(view: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a route: DomainError becomes its status and JSON envelope; an unavailable AWS
    (throttled, timed out, unreachable, REST_DEADLINE spent) a 503 with Retry-After; anything
    else is logged and answered as a JSON 500 (Chalice middleware does not see view exceptions)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with deadline(settings.get().rest_deadline):
                return view(*args, **kwargs)
        except DomainError as exc:
            return error_response(exc)
        except Exception as exc:
            if is_unavailable(exc):
                # Throttled, timed out or unreachable AWS: an honest 503, never a 500 or a hang.
                logger.warning("AWS unavailable in %s: %s", view.__name__, type(exc).__name__)
                return error_response(
                    DomainError(
                        "unavailable",
                        "the service is busy; try again later",
                        headers={"Retry-After": retry_after()},
                    )
                )
            logger.exception("unhandled error in %s", view.__name__)
            return error_response(DomainError("internal", "internal error"))

    return wrapper
