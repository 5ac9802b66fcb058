"""The Linphone account assistant's XML-RPC API (SDK 5.1 `LinphoneAccountCreator`), served
through the phone-accounts domain: same codes, limits, uniqueness and recovery as the REST API.

Each method answers the strings the SDK compares (see `errors.XMLRPC_ANSWERS`); malformed
calls, unknown methods and wrong argument counts are XML-RPC faults. Everything is HTTP 200:
the SDK treats any other status as a failed request, and XML-RPC carries its own errors.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from chalice import Response
from chalice.app import Request

from chalicelib import accounts, settings
from chalicelib.accounts import auth_guard, linking, phone, rate_limits, signup, verification
from chalicelib.api.http_api import XML_CONTENT_TYPES, body_bytes, media_type, source_ip
from chalicelib.api.xmlrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    XmlRpcFault,
    fault_response,
    parse_call,
    string_response,
    struct_response,
)
from chalicelib.errors import DomainError, xmlrpc_answer
from chalicelib.observability import flush_metrics, logger

#: Content types an XML-RPC body may be sent with. Neither is one a cross-site HTML form or a
#: "simple" fetch can send, so a web page cannot make its visitors' browsers ask for codes;
#: a request without a Content-Type is refused for the same reason.

#: What is not a used number (the SDK: anything but OK_ACCOUNT / OK_ALIAS).
NOT_USED = "ERROR_ALIAS_DOESNT_EXIST"
#: get_phone_number_for_account's only answer: "not linked" and "username free" to the SDK.
NOT_AN_ACCOUNT = "ERROR_ACCOUNT_DOESNT_EXIST"

Answer = str | list[tuple[str, str]]


@dataclass(frozen=True)
class Caller:
    source_ip: str


# --- Shared checks --------------------------------------------------------------------------


def _domain(raw: str) -> None:
    if raw.strip().lower() != settings.get().sip_domain.lower():
        raise DomainError("unknown_domain", f"domain: this service serves {accounts.domain()}")


def _algorithm(raw: str) -> str:
    # The SDK sends MD5 when the app set none (fill_domain_and_algorithm_if_needed).
    algorithm = raw.strip().upper() or "MD5"
    if algorithm not in accounts.HA1_LENGTHS:
        raise DomainError("unsupported_algorithm", "algorithm: MD5 or SHA-256")
    return algorithm


def _username_for(username: str, phone_raw: str, e164: str) -> str | None:
    """The username asked for, or None when it is the number (the SDK sends the number when
    the app set no username)."""
    return None if username.strip() in {"", phone_raw.strip(), e164} else username


def _account(username: str) -> accounts.Account:
    if not accounts.LEGACY_USERNAME_RE.fullmatch(username):
        raise DomainError("not_found", "no such account")
    account = accounts.get_by_username(username)
    if account is None:
        raise DomainError("not_found", "no such account")
    if account.disabled:
        raise DomainError("account_disabled", "the account is disabled")
    return account


def _code(code: str) -> str:
    # A malformed code is a wrong code to the app's user; it uses no try.
    if not verification.well_formed(code):
        raise DomainError("code_mismatch", "code: malformed")
    return code


# --- Methods --------------------------------------------------------------------------------
#
# What a caller who has proven nothing can learn: nothing about any account. Every method that
# takes no code and no HA1 answers the same for a taken and a free number or username, after
# the rate limits and before any lookup; what differs (an SMS sent or not) only reaches the
# number's owner.


def create_phone_account(
    caller: Caller,
    phone_raw: str,
    username: str,
    ha1: str,
    user_agent: str,
    domain: str,
    lang: str,
    algo: str,
) -> Answer:
    """Send a sign-up code; the HA1 waits with the code until it is proven (then is deleted).

    Whether the number or the username is taken is told only to the request that proves the
    code (activate_phone_account). With no HA1 (the app set no password) the account gets a
    random password at activation, and activation answers its HA1. A pending code asked with
    other credentials is not replaced (ERROR_MAX_SMS_EXCEEDED until it expires)."""
    _domain(domain)
    algorithm = _algorithm(algo)
    e164 = phone.parse(phone_raw)
    wanted = _username_for(username, phone_raw, e164)
    if wanted is not None:
        wanted = accounts.validate_username(wanted)
    payload: dict[str, str] = {}
    if ha1.strip():
        credentials = accounts.credentials_from_ha1(ha1.strip(), algorithm)
        payload["ha1"] = credentials.ha1_md5 or credentials.ha1_sha256 or ""
    owner = "|".join(("assistant", wanted or e164, algorithm, payload.get("ha1", "")))
    signup.request_code(
        e164,
        username=wanted,
        source_ip=caller.source_ip,
        payload=payload or None,
        owner=owner,
        binding=signup.assistant_binding(algorithm),
    )
    return "OK"


def activate_phone_account(
    caller: Caller, phone_raw: str, username: str, code: str, domain: str, algo: str
) -> Answer:
    """Prove the code: create the account (or recover the number's account of the same
    username, with the new credentials) and answer its HA1 in `algo`, once. The username and
    algorithm are part of the code: a wrong one is a wrong code (one try used)."""
    _domain(domain)
    algorithm = _algorithm(algo)
    e164 = phone.parse(phone_raw)
    code = _code(code)
    asked = _username_for(username, phone_raw, e164)
    _result, ha1 = signup.confirm_assistant(e164, code, username=asked, algorithm=algorithm)
    return ha1


def is_phone_number_used(caller: Caller, phone_raw: str, domain: str) -> Answer:
    """Always "not used" (after the rate limit): whether a number has an account is told only
    to whoever proves the number."""
    rate_limits.reserve_call(caller.source_ip)
    _domain(domain)
    phone.parse(phone_raw)
    return NOT_USED


def link_phone_number_with_account(
    caller: Caller, phone_raw: str, username: str, domain: str, lang: str
) -> Answer:
    """Send a code binding this number to this account (proven later with the account's HA1).
    Answers OK whether or not the account exists or already has the number."""
    _domain(domain)
    linking.request_unauthenticated(username, phone_raw, source_ip=caller.source_ip)
    return "OK"


def activate_phone_number_link(
    caller: Caller,
    phone_raw: str,
    username: str,
    code: str,
    ha1: str,
    domain: str,
    algo: str,
) -> Answer:
    """Link the number, given the account's HA1 and the code sent to that very number."""
    _domain(domain)
    algorithm = _algorithm(algo)

    def check() -> accounts.Account | None:
        try:
            account = _account(username)
        except DomainError:
            return None  # same answer as a wrong HA1: this step does not tell who exists
        stored = account.ha1s().get(algorithm)
        return account if stored and hmac.compare_digest(stored, ha1.strip().lower()) else None

    attempt = auth_guard.Attempt(accounts.aor_for(username.strip().lower()), caller.source_ip)
    account = auth_guard.guarded(attempt, check)
    if account is None:
        raise DomainError("unauthorized", "wrong username or HA1")
    region = phone.region_of(account.phone) if account.phone else None
    e164 = phone.parse(phone_raw, region)
    linking.confirm(account, _code(code), phone_e164=e164)
    return "OK"


def get_phone_number_for_account(caller: Caller, username: str, domain: str) -> Answer:
    """Always "no such account" (after the rate limit): an account's number is not told to a
    caller who proved nothing. (The SDK reads it as "not linked", and, for its "does this
    username exist" check, as "free": creation then goes on, and a taken username is told
    once the code is proven.)"""
    rate_limits.reserve_call(caller.source_ip)
    _domain(domain)
    return NOT_AN_ACCOUNT


def is_account_activated(caller: Caller, username: str, domain: str, algo: str) -> Answer:
    """Always OK (after the rate limit): accounts exist only once a code was proven, so an
    existing account is activated, and the answer must not tell whether it exists."""
    rate_limits.reserve_call(caller.source_ip)
    _domain(domain)
    _algorithm(algo)
    return "OK"


def recover_phone_account(caller: Caller, phone_raw: str, domain: str, lang: str) -> Answer:
    """Send a recovery code to the number and answer the number itself as the username:
    the same for every number, taken or free, and the account's real username is never told
    before the code is proven. (An account whose username is its number, as the assistant
    makes them by default, recovers fully; see docs/clients.md.)"""
    _domain(domain)
    e164 = phone.parse(phone_raw)
    signup.request_code(
        e164, source_ip=caller.source_ip, owner="assistant-recover", binding=signup.RECOVER
    )
    return e164


def recover_account_from_confirmation_key(
    caller: Caller, username: str, code: str, domain: str, algo: str
) -> Answer:
    """Prove the code sent by recover_phone_account; the number's account gets new credentials
    (a random password, never its existing HA1; its old sessions are ended) and the answer is
    {password: their HA1 in `algo`, algorithm}. `username` is what recover_phone_account
    answered (the number), or the account's username."""
    rate_limits.reserve_call(caller.source_ip)
    _domain(domain)
    algorithm = _algorithm(algo)
    code = _code(code)
    e164 = phone.try_parse(username, None) if username.strip().startswith("+") else None
    if e164 is None:
        try:
            e164 = _account(username).phone
        except DomainError:
            e164 = None
    if e164 is None:
        # Nothing can be pending: the same answer as a wrong code.
        raise DomainError("code_mismatch", "wrong code")
    _result, ha1 = signup.recover_assistant(e164, code, algorithm=algorithm)
    # Member order matters: SDK 5.1 reads the struct's values by position (HA1, algorithm).
    return [("password", ha1), ("algorithm", algorithm)]


#: name -> handler; the argument count is the handler's (the SDK's argument order).
METHODS: dict[str, Callable[..., Answer]] = {
    "create_phone_account": create_phone_account,
    "activate_phone_account": activate_phone_account,
    "is_phone_number_used": is_phone_number_used,
    "link_phone_number_with_account": link_phone_number_with_account,
    "activate_phone_number_link": activate_phone_number_link,
    "get_phone_number_for_account": get_phone_number_for_account,
    "is_account_activated": is_account_activated,
    "recover_phone_account": recover_phone_account,
    "recover_account_from_confirmation_key": recover_account_from_confirmation_key,
}


def _arity(handler: Callable[..., Answer]) -> int:
    return handler.__code__.co_argcount - 1  # minus the caller


# --- Dispatch -------------------------------------------------------------------------------


def call(body: bytes, caller: Caller) -> str:
    """Run one XML-RPC call body; answer the methodResponse document (never raises)."""
    method = "?"
    try:
        parsed = parse_call(body, max_bytes=settings.get().xmlrpc_max_body_bytes)
        method = parsed.name
        handler = METHODS.get(parsed.name)
        if handler is None:
            raise XmlRpcFault(METHOD_NOT_FOUND, f"unknown method {parsed.name[:64]!r}")
        if len(parsed.params) != _arity(handler):
            raise XmlRpcFault(
                INVALID_PARAMS,
                f"{parsed.name} takes {_arity(handler)} string params, got {len(parsed.params)}",
            )
        try:
            answer = handler(caller, *parsed.params)
        except DomainError as exc:
            # The code only: messages may name the number or the username.
            logger.info("xmlrpc refused", extra={"method": method, "code": exc.code})
            return string_response(xmlrpc_answer(exc.code))
        logger.info("xmlrpc answered", extra={"method": method})
        if isinstance(answer, str):
            return string_response(answer)
        return struct_response(answer)
    except XmlRpcFault as fault:
        logger.info("xmlrpc fault", extra={"method": method, "fault": fault.code})
        return fault_response(fault.code, fault.message)
    except Exception:
        logger.exception("xmlrpc internal error", extra={"method": method})
        return fault_response(INTERNAL_ERROR, "internal error")


def handle(request: Request) -> Response:
    """The route handler of POST /wizard.php and POST /v1/xmlrpc."""
    content_type = media_type(request)
    if content_type not in XML_CONTENT_TYPES:
        body = fault_response(INVALID_REQUEST, "send the call as text/xml")
    else:
        body = call(body_bytes(request), Caller(source_ip(request)))
    flush_metrics()
    return Response(body=body, status_code=200, headers={"Content-Type": "text/xml; charset=utf-8"})
