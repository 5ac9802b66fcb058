"""The REST side of accounts, sign-up and discovery: request bodies into domain calls, domain
results into responses. The routes in app.py are one line each calling these.

Every function takes the Chalice request; `DomainError`s propagate to `http_api.rest`.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Set
from typing import Any

from chalice import Response
from chalice.app import Request

from chalicelib import accounts
from chalicelib.accounts import linking, provisioning, signup
from chalicelib.api import http_api, http_auth, provisioning_api
from chalicelib.errors import DomainError
from chalicelib.observability import flush_metrics, logger, pseudonym
from chalicelib.presence import discovery


def _scoped(view: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """Correlation id for the request's logs, and its EMF metrics flushed when it ends."""

    @functools.wraps(view)
    def wrapper(request: Request) -> Response:
        context = request.context or {}
        request_id = context.get("requestId") or str(uuid.uuid4())
        logger.set_correlation_id(request_id)
        try:
            return view(request)
        finally:
            flush_metrics()
            logger.set_correlation_id(None)

    return wrapper


def _body(request: Request, *, required: Set[str], optional: Set[str] = frozenset()) -> dict:
    content_type = http_api.media_type(request)
    # Required, not merely checked when present: an HTML form or a "simple" cross-site fetch
    # can only send text/plain, form or multipart bodies, so a web page cannot make its
    # visitors' browsers ask for codes (a JSON type needs a CORS preflight, never granted).
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise DomainError("unsupported_media_type", "send the body as application/json")
    return http_api.json_body(http_api.body_bytes(request), required=required, optional=optional)


def _json(body: dict[str, Any] | list[Any], status: int = 200) -> Response:
    return Response(body=body, status_code=status, headers={"Content-Type": "application/json"})


def _no_content() -> Response:
    return Response(body="", status_code=204)


def _request_path(request: Request) -> str:
    context = request.context or {}
    return str(context.get("path") or request.path)


def _caller(request: Request) -> accounts.Account:
    return http_auth.authenticate(
        request.headers,
        request.method,
        _request_path(request),
        source=http_api.client_ip(request),
    )


# --- Sign-up ------------------------------------------------------------------------------


@_scoped
def signup_request(request: Request) -> Response:
    data = _body(request, required={"phone"}, optional={"username", "default_region"})
    expires_in = signup.request_code(
        data["phone"],
        username=data.get("username"),
        default_region=data.get("default_region"),
        source_ip=http_api.source_ip(request),
    )
    return _json({"expires_in": expires_in}, 202)


@_scoped
def signup_confirm(request: Request) -> Response:
    data = _body(request, required={"phone", "code", "password"}, optional={"default_region"})
    result = signup.confirm(
        data["phone"],
        data["code"],
        password=data["password"],
        default_region=data.get("default_region"),
    )
    return _json(result.to_json(), result.http_status)


# --- The signed-in account ----------------------------------------------------------------


@_scoped
def me_get(request: Request) -> Response:
    return _json(_caller(request).public())


@_scoped
def me_patch(request: Request) -> Response:
    caller = _caller(request)
    data = _body(request, required=set(), optional={"discoverable", "password"})
    if not data:
        raise DomainError("missing_field", "nothing to change: give discoverable and/or password")
    discoverable = data.get("discoverable")
    if "discoverable" in data and not isinstance(discoverable, bool):
        raise DomainError("invalid_field", "discoverable: expected true or false")
    credentials = (
        accounts.credentials_from_password(caller.username, data["password"])
        if "password" in data
        else None
    )
    # A new password ends the sessions made with the old one (a user who changes it because
    # it leaked expects the other party to be signed out).
    updated = accounts.update(
        caller.aor,
        discoverable=discoverable,
        credentials=credentials,
        revoke=credentials is not None,
    )
    logger.info("account updated", extra={"aor": pseudonym(caller.aor), "fields": sorted(data)})
    return _json(updated.public())


@_scoped
def me_delete(request: Request) -> Response:
    caller = _caller(request)
    accounts.delete(caller.aor)
    logger.info("account deleted", extra={"aor": pseudonym(caller.aor)})
    return _no_content()


@_scoped
def phone_link_request(request: Request) -> Response:
    caller = _caller(request)
    data = _body(request, required={"phone"}, optional={"default_region"})
    expires_in = linking.request(
        caller,
        data["phone"],
        default_region=data.get("default_region"),
        source_ip=http_api.source_ip(request),
    )
    return _json({"expires_in": expires_in}, 202)


@_scoped
def phone_link_confirm(request: Request) -> Response:
    caller = _caller(request)
    data = _body(request, required={"code"})
    return _json(linking.confirm(caller, data["code"]).public())


@_scoped
def phone_unlink(request: Request) -> Response:
    linking.unlink(_caller(request))
    return _no_content()


@_scoped
def provisioning_link(request: Request) -> Response:
    """A single-use link that configures one more phone for the signed-in account."""
    caller = _caller(request)
    link = provisioning.issue_link(caller, http_api.public_base_url(request))
    return _json(provisioning_api.link_json(request, link), 201)


# --- Discovery ----------------------------------------------------------------------------


@_scoped
def contacts_discover(request: Request) -> Response:
    caller = _caller(request)
    data = _body(request, required={"phones"}, optional={"default_region"})
    found = discovery.discover(caller, data["phones"], default_region=data.get("default_region"))
    response = _json(found.to_json())
    if found.deferred:
        # Over budget: what could be afforded is answered; the rest, once tokens are back.
        response.headers["Retry-After"] = str(found.retry_after)
    return response
