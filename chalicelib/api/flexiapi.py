"""The Linphone apps' account API: the subset of FlexiAPI (flexisip-account-manager's REST API)
their assistants call, under `<public URL>/api/`, in FlexiAPI's shapes and statuses.

Two client generations, both served:

- the Linphone SDK 5.1 `AccountCreator` on its FlexiAPI backend: `tokens`, `accounts/with-token`,
  `accounts/{sip}/info`, `accounts/{sip}/activate/email` (its phone activation too),
  `accounts/me/phone/request`, `accounts/me/phone`, `accounts/me`, `accounts/me/password`
  (its two password fields swapped) and `DELETE accounts/me`;
- Linphone 6 (`AccountManagerServices`): `account_creation_tokens/send-by-push`, the request
  token of the desktop app (`account_creation_request_tokens`, then
  `account_creation_tokens/using-account-creation-request-token`),
  `accounts/with-account-creation-token`, the phone routes, `accounts/me/devices` (list, sign
  one out), `accounts/me/provision` and `ping`.

What both clients need, kept on every route: every answer has a JSON body (5.1 crashes on an
empty 2xx) with Content-Type exactly `application/json` (6 compares the string); errors are
Laravel's `{"message", "errors": {field: [...]}}` (6 shows `message` and the first text of each
field); 422 is a refused field (5.1's MissingArguments). `accounts/me/*` authenticate the
account their `From:` names with HTTP Digest (SHA-256 and MD5, qop=auth) against its stored
HA1s, through the same nonces, replay counts, guessing limits and errors as the REST API
(`http_auth`), and only Digest is offered: both SDKs answer the first challenge they can.
Nothing tells a stranger whether an account exists: `accounts/{sip}/info` answers the truth only
to that account, signed in, and 404 to anyone else, as for a name nobody has.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from chalice import Response
from chalice.app import Request

from chalicelib import accounts, clock, settings
from chalicelib.accounts import app_signup, linking, provisioning, push
from chalicelib.api import http_api, http_auth
from chalicelib.errors import DomainError
from chalicelib.live import devices
from chalicelib.observability import flush_metrics, logger, pseudonym
from chalicelib.resilience import deadline, is_unavailable, retry_after

CONTENT_TYPE = "application/json"
NOT_FOUND = "No query results for model [App\\Account]."
_FIELD_MESSAGE = re.compile(r"([a-z_]+): (.+)", re.S)
_FROM_URI = re.compile(r"sips?:([^@;>\s]+)@([^;>\s?]+)", re.I)

#: DomainError code -> FlexiAPI status. A code not listed keeps its REST status.
STATUS = {
    "invalid_json": 422,
    "invalid_field": 422,
    "missing_field": 422,
    "unknown_field": 422,
    "invalid_phone": 422,
    "invalid_username": 422,
    "region_not_allowed": 422,
    "sms_not_allowed": 422,
    "unsupported_algorithm": 422,
    "unknown_domain": 422,
    "username_taken": 422,
    "phone_taken": 422,
    "phone_already_linked": 422,
    "code_mismatch": 422,
    "code_not_found": 422,
    "code_used": 422,
    "token_invalid": 422,
    "auth_blocked": 429,
}
#: The field a code's error is about, when its message does not name one (`field: text`).
FIELD = {
    "username_taken": "username",
    "phone_taken": "phone",
    "phone_already_linked": "phone",
    "code_mismatch": "code",
    "code_not_found": "code",
    "code_used": "code",
    "unsupported_algorithm": "algorithm",
}


class FlexiError(Exception):
    """An answer in FlexiAPI's error shape, raised where the route knows it."""

    def __init__(
        self,
        status: int,
        message: str,
        errors: dict[str, list[str]] | None = None,
        headers: dict[str, str | list[str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}


def json_answer(body: Any, status: int = 200, headers: dict[str, Any] | None = None) -> Response:
    """A JSON answer: never an empty body, Content-Type exactly application/json."""
    return Response(
        body=json.dumps(body, separators=(",", ":")),
        status_code=status,
        headers={**(headers or {}), "Content-Type": CONTENT_TYPE},
    )


def _error_answer(exc: FlexiError) -> Response:
    body: dict[str, Any] = {"message": exc.message}
    if exc.errors:
        body["errors"] = exc.errors
    return json_answer(body, exc.status, exc.headers)


def translate(exc: DomainError, *, field: str | None = None) -> FlexiError:
    """A domain error in FlexiAPI's shape: 422 with `errors` for a refused field."""
    status = STATUS.get(exc.code, exc.http_status)
    found = _FIELD_MESSAGE.fullmatch(exc.message)
    name = field or FIELD.get(exc.code) or (found.group(1) if found else None)
    text = found.group(2) if found else exc.message
    errors = {name: [text]} if status == 422 and name else None
    return FlexiError(status, exc.message, errors, dict(exc.headers))


def view(handler: Callable[..., Response]) -> Callable[..., Response]:
    """Decorate an account-API view: REST_DEADLINE on its AWS calls, FlexiAPI's error shape,
    503 + Retry-After when AWS is unavailable, a JSON 500 for anything else; a correlation id
    for its logs and its metrics flushed."""

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        request: Request = args[0]
        logger.set_correlation_id((request.context or {}).get("requestId") or str(uuid.uuid4()))
        try:
            with deadline(settings.get().rest_deadline):
                return handler(*args, **kwargs)
        except FlexiError as exc:
            return _error_answer(exc)
        except DomainError as exc:
            return _error_answer(translate(exc))
        except Exception as exc:
            if is_unavailable(exc):
                logger.warning("AWS unavailable in %s: %s", handler.__name__, type(exc).__name__)
                return _error_answer(
                    FlexiError(
                        503,
                        "The service is busy; try again later.",
                        None,
                        {"Retry-After": retry_after()},
                    )  # fmt: skip
                )
            logger.exception("unhandled error in %s", handler.__name__)
            return _error_answer(FlexiError(500, "Server Error"))
        finally:
            flush_metrics()
            logger.set_correlation_id(None)

    return wrapper


# --- Request plumbing -----------------------------------------------------------------------


def _body(request: Request, *fields: str, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON object body (unknown members ignored, as FlexiAPI does); 422 naming each
    missing field, 415 for a body that is not JSON."""
    raw = http_api.body_bytes(request) or b""
    data: Any = {}
    if raw.strip():
        content_type = http_api.media_type(request)
        if content_type != CONTENT_TYPE and not content_type.endswith("+json"):
            raise FlexiError(415, "Send the body as application/json.")
        if len(raw) > settings.get().max_body_bytes:
            raise FlexiError(413, "The body is too large.")
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise FlexiError(422, "The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise FlexiError(422, "The body must be a JSON object.")
    missing = {f: [f"The {f} field is required."] for f in fields if data.get(f) in (None, "")}
    if missing:
        raise FlexiError(422, next(iter(missing.values()))[0], missing)
    return {f: data.get(f) for f in (*fields, *optional)}


def _source(request: Request) -> str:
    return http_api.client_ip(request)


def _path(request: Request) -> str:
    return str((request.context or {}).get("path") or request.path)


def _claimed(request: Request) -> str | None:
    """The address of record the request's From names (`sip:user@domain`), or None."""
    value = request.headers.get("from") or ""
    found = _FROM_URI.search(value)
    if not found:
        return None
    return f"{unquote(found.group(1))}@{found.group(2)}".lower()


def _caller(request: Request, *, pending_ok: bool = True) -> accounts.Account:
    """The account the request's From names, proven by Digest (401 with the challenges
    otherwise, the same whether the account exists or not); 422 without a From, as FlexiAPI."""
    if not request.headers.get("from"):
        message = "The from field is required."
        raise FlexiError(422, message, {"from": [message]})
    # A From naming no account of ours can be proven by no credentials: 401 like any other.
    claimed = _claimed(request) or "\x00"
    try:
        return http_auth.authenticate(
            request.headers,
            request.method,
            _path(request),
            source=_source(request),
            identity=claimed,
            basic=False,
            pending_ok=pending_ok,
        )
    except DomainError as exc:
        if exc.code == "unauthorized":
            raise FlexiError(401, "Unauthenticated.", None, dict(exc.headers)) from None
        raise


def _sip(raw: str) -> str:
    """The `{sip}` of a path (`user@domain`, sent unescaped by the SDK) as an address of
    record, lower-cased; 404 for anything else."""
    value = unquote(raw).removeprefix("sip:").lower()
    if value.count("@") != 1:
        raise FlexiError(404, NOT_FOUND)
    return value


def account_json(account: accounts.Account) -> dict[str, Any]:
    """An account in FlexiAPI's shape (its members the apps read: username, domain,
    activated, phone), without its internal id or credentials."""
    return {
        "username": account.username,
        "domain": account.domain,
        "sip_uri": account.sip_uri,
        "email": None,
        "display_name": None,
        "activated": account.activated,
        "realm": None,
        "phone": account.phone,
        "dtmf_protocol": None,
        "creation_time": clock.iso(account.created_at),
        "passwords": [{"algorithm": algorithm} for algorithm in sorted(account.ha1s())],
        "admin": False,
        "types": [],
        "actions": [],
    }


def _token_error(exc: DomainError, field: str) -> FlexiError:
    if exc.code == "token_invalid":
        return translate(exc, field=field)
    return translate(exc)


# --- Account-creation tokens ----------------------------------------------------------------


@view
def send_token_by_push(request: Request) -> Response:
    """`POST tokens` (5.1) and `POST account_creation_tokens/send-by-push` (6): push a new
    creation token to the device the parameters name. 200 `{}` (never empty: 5.1)."""
    data = _body(request, "pn_provider", "pn_param", "pn_prid")
    device = push.Device.parse(data["pn_provider"], data["pn_param"], data["pn_prid"])
    app_signup.send_token_by_push(device, source_ip=_source(request))
    return json_answer({})


@view
def request_token(request: Request) -> Response:
    """`POST account_creation_request_tokens` (desktop 6): a token for a person to validate at
    `validation_url`; the app polls `token_for_request` meanwhile."""
    token = app_signup.request_token(source_ip=_source(request))
    url = f"{http_api.public_base_url(request)}/creation_token/check/{token.value}"
    return json_answer(
        {"token": token.value, "validation_url": url, "expire_at": clock.iso(token.expires_at)},
        201,
    )


@view
def token_for_request(request: Request) -> Response:
    """`POST account_creation_tokens/using-account-creation-request-token`: 201 the creation
    token once a person validated the request token; 404 (no `errors`: the desktop app asks
    again) until then; 422 on the field for an unknown, used or expired one."""
    field = "account_creation_request_token"
    data = _body(request, field)
    try:
        token = app_signup.token_for_request(data[field])
    except DomainError as exc:
        if exc.code == "token_not_validated":
            message = "The account creation request token is not validated yet."
            raise FlexiError(404, message) from None
        raise _token_error(exc, field) from None
    return json_answer({"token": token.value, "expire_at": clock.iso(token.expires_at)}, 201)


# --- Creating the account -------------------------------------------------------------------


def _create(request: Request, token_field: str, *, with_domain: bool) -> Response:
    fields = (token_field, "username", "password", "algorithm")
    data = _body(request, *fields, optional=("domain",) if with_domain else ())
    try:
        account = app_signup.create_account(
            data[token_field],
            username=data["username"],
            password=data["password"],
            algorithm=data["algorithm"],
            domain=data.get("domain"),
        )
    except DomainError as exc:
        raise _token_error(exc, token_field) from None
    return json_answer(account_json(account))


@view
def create_with_token(request: Request) -> Response:
    """`POST accounts/with-token` (5.1): `{algorithm, domain, password, token, username}`."""
    return _create(request, "token", with_domain=True)


@view
def create_with_account_creation_token(request: Request) -> Response:
    """`POST accounts/with-account-creation-token` (6): no domain (ours); the app reads
    `username` and `domain` from the answer."""
    return _create(request, "account_creation_token", with_domain=False)


@view
def info(request: Request, sip: str) -> Response:
    """`GET accounts/{sip}/info` (5.1's is_account_exist and is_account_activated): 200
    `{activated, realm}` to that account only, signed in (a From naming it gets the Digest
    challenge, whether it exists or not); 404 to anyone else, whether it exists or not, as
    FlexiAPI answers for a free name. So a stranger learns nothing, and an app about to
    create an account finds the name free and learns the truth only from the creation,
    which costs a creation token."""
    aor = _sip(sip)
    if _claimed(request) != aor:
        raise FlexiError(404, NOT_FOUND)
    account = _caller(request)
    return json_answer({"activated": account.activated, "realm": None})


@view
def activate(request: Request, sip: str) -> Response:
    """`POST accounts/{sip}/activate/email` and `.../activate/phone` `{code}` (5.1's
    activate_account, which posts the phone flow to the email route): the account, signed
    in, confirms the code its number link sent. 404 for anyone else and for any code that
    does not fit (FlexiAPI's answer to a wrong key), 429 past the number's budget."""
    aor = _sip(sip)
    if _claimed(request) != aor:
        raise FlexiError(404, NOT_FOUND)
    account = _caller(request)
    data = _body(request, "code")
    try:
        linked = linking.confirm(account, data["code"])
    except DomainError as exc:
        if exc.code.startswith("code_") or exc.code == "invalid_field":
            raise FlexiError(404, NOT_FOUND) from None
        raise
    return json_answer(account_json(linked))


# --- The signed-in account ------------------------------------------------------------------


@view
def me(request: Request) -> Response:
    return json_answer(account_json(_caller(request)))


@view
def delete_me(request: Request) -> Response:
    """`DELETE accounts/me`: frees the username and the number; the account's SIP sessions end
    (final NOTIFYs). 200 `{}` (5.1 needs a body)."""
    account = _caller(request)
    accounts.delete(account.aor)
    logger.info("account deleted", extra={"aor": pseudonym(account.aor)})
    return json_answer({})


@view
def change_password(request: Request) -> Response:
    """`POST accounts/me/password` `{algorithm, old_password, password}` (fields swapped by
    5.1: see `app_signup.change_password`). The sessions made with the old one end."""
    account = _caller(request)
    data = _body(request, "algorithm", "old_password", "password")
    app_signup.check_algorithm(data["algorithm"])
    updated = app_signup.change_password(
        account, password=data["password"], old_password=data["old_password"]
    )
    return json_answer(account_json(updated))


@view
def phone_request(request: Request) -> Response:
    """`POST accounts/me/phone/request` `{phone}`: an SMS code to the number (E.164, as both
    SDKs send it). 200 `{}`; 422 on `phone`; 429 past a budget; 503 if the SMS fails."""
    account = _caller(request)
    data = _body(request, "phone")
    linking.request(account, data["phone"], source_ip=_source(request))
    return json_answer({})


@view
def phone_confirm(request: Request) -> Response:
    """`POST accounts/me/phone` `{code}`: links the number, which activates a pending
    account. 200 the account; 422 on `code` (wrong, or none pending); 410 expired."""
    account = _caller(request)
    data = _body(request, "code")
    try:
        linked = linking.confirm(account, data["code"])
    except DomainError as exc:
        if exc.code == "code_expired":
            raise FlexiError(410, "Expired code") from None
        raise
    return json_answer(account_json(linked))


@view
def devices_list(request: Request) -> Response:
    """`GET accounts/me/devices`: `{uuid: {uuid, update_time, user_agent}}`, `{}` for none
    (an object: Linphone 6 cannot read an array)."""
    account = _caller(request)
    listed = {
        d.uuid: {
            "uuid": d.uuid,
            "update_time": clock.iso(d.update_time),
            "user_agent": d.user_agent,
        }
        for d in devices.of_account(account.aor)
    }
    return json_answer(listed)


@view
def device_delete(request: Request, device: str) -> Response:
    """`DELETE accounts/me/devices/{uuid}`: sign the device out. 200 `true` when the account
    had it, `false` otherwise (never 404, as FlexiAPI)."""
    account = _caller(request)
    return json_answer(devices.sign_out(account.aor, unquote(device)))


@view
def provision(request: Request) -> Response:
    """`GET accounts/me/provision`: the account with a new single-use provisioning link
    (`provisioning_token`, its expiry, and the link itself)."""
    account = _caller(request, pending_ok=False)
    link = provisioning.issue_link(account, http_api.public_base_url(request))
    return json_answer(
        {
            **account_json(account),
            "provisioning_token": link.token,
            "provisioning_token_expire_at": clock.iso(link.expires_at),
            "provisioning_url": link.url,
        }
    )


@view
def ping(request: Request) -> Response:
    return json_answer({"message": "pong"})
