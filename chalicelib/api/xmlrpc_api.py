"""The Linphone account assistant's XML-RPC API (SDK 5.1 `LinphoneAccountCreator`), served
through the phone-accounts domain: same codes, limits, uniqueness and recovery as the REST API.

Each method answers the strings the SDK compares (see `errors.XMLRPC_ANSWERS`); malformed
calls, unknown methods and wrong argument counts are XML-RPC faults. Everything is HTTP 200:
the SDK treats any other status as a failed request, and XML-RPC carries its own errors.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from chalice import Response
from chalice.app import Request

from chalicelib import accounts, digest, settings
from chalicelib.accounts import auth_guard, linking, phone, rate_limits, signup, verification
from chalicelib.api.http_api import media_type, source_ip
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

#: Content types an XML-RPC body may be sent with (none at all is accepted too).
XML_CONTENT_TYPES = ("text/xml", "application/xml")
#: Chalice matches the route's content types before the view runs; "*/*" lets a wrong one
#: reach us and get a fault instead of Chalice's JSON 415.
ROUTE_CONTENT_TYPES = [*XML_CONTENT_TYPES, "*/*"]

#: What is not a used number (the SDK: anything but OK_ACCOUNT / OK_ALIAS).
NOT_USED = "ERROR_ALIAS_DOESNT_EXIST"

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


def _hide() -> bool:
    return settings.get().xmlrpc_phone_used_mode == "hide"


# --- Methods --------------------------------------------------------------------------------


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
    """Send a sign-up code; the credentials wait with the code until it is proven.

    With no HA1 (the app set no password) the account gets a random password at activation,
    and activation answers its HA1."""
    _domain(domain)
    algorithm = _algorithm(algo)
    e164 = phone.parse(phone_raw)
    wanted = _username_for(username, phone_raw, e164)
    if wanted is not None:
        wanted = accounts.validate_username(wanted)
    final_username = wanted or e164
    payload = {"username": final_username, "algorithm": algorithm}
    if ha1.strip():
        credentials = accounts.credentials_from_ha1(ha1.strip(), algorithm)
        payload["ha1"] = credentials.ha1_md5 or credentials.ha1_sha256 or ""
    else:
        payload["password"] = secrets.token_urlsafe(24)
    if not _hide():
        # Answer mode: the number's status is public anyway (is_phone_number_used), and the
        # app expects to hear it here rather than after an SMS.
        if accounts.find_by_phone(e164) is not None:
            raise DomainError("phone_taken", "phone: already linked to an account")
        if wanted is None and accounts.get_by_username(e164) is not None:
            raise DomainError("username_taken", f"username: {e164} is taken")
    signup.request_code(e164, username=wanted, source_ip=caller.source_ip, payload=payload)
    return "OK"


def activate_phone_account(
    caller: Caller, phone_raw: str, username: str, code: str, domain: str, algo: str
) -> Answer:
    """Prove the code: create the account (or recover the number's account of the same
    username) and answer its HA1 in `algo` — only to the request that proved the code."""
    _domain(domain)
    algorithm = _algorithm(algo)
    e164 = phone.parse(phone_raw)
    code = _code(code)
    pending = verification.peek(verification.SIGNUP, e164)
    payload = pending.payload if pending is not None else {}
    if pending is None or "username" not in payload:
        raise DomainError("code_not_found", "no sign-up is pending for this number")
    if pending.used:
        # Never answer a used code again: tries on used codes are not counted, so a replay
        # would let anyone brute-force the HA1 out of it.
        raise DomainError("code_used", "the code was already used")
    asked = _username_for(username, phone_raw, e164) or e164
    if asked != payload["username"]:
        raise DomainError("code_not_found", "no sign-up is pending for this username")
    if "ha1" in payload:
        if payload["algorithm"] != algorithm:
            raise DomainError("unsupported_algorithm", f"the HA1 was given in {algorithm}")
        signup.confirm(
            e164,
            code,
            ha1=payload["ha1"],
            algorithm=payload["algorithm"],
            same_username_only=True,
        )
        return payload["ha1"]
    result = signup.confirm(e164, code, password=payload["password"], same_username_only=True)
    return digest.ha1(algorithm, result.username, accounts.domain(), payload["password"])


def is_phone_number_used(caller: Caller, phone_raw: str, domain: str) -> Answer:
    """OK_ACCOUNT (the number is an account's username), OK_ALIAS (linked to an account) or
    not used; rate-limited, and always "not used" in hide mode."""
    _domain(domain)
    e164 = phone.parse(phone_raw)
    if _hide():
        return NOT_USED
    rate_limits.reserve_lookup(e164, caller.source_ip)
    account = accounts.find_by_phone(e164)
    if account is None:
        return NOT_USED
    return "OK_ACCOUNT" if account.username == e164 else "OK_ALIAS"


def link_phone_number_with_account(
    caller: Caller, phone_raw: str, username: str, domain: str, lang: str
) -> Answer:
    """Send a code binding this number to this account (proven later with the account's HA1)."""
    _domain(domain)
    linking.request(_account(username), phone_raw, source_ip=caller.source_ip)
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

    attempt = auth_guard.Attempt(accounts.aor_of(username.strip().lower()), caller.source_ip)
    account = auth_guard.guarded(attempt, check)
    if account is None:
        raise DomainError("unauthorized", "wrong username or HA1")
    region = phone.region_of(account.phone) if account.phone else None
    e164 = phone.parse(phone_raw, region)
    linking.confirm(account, _code(code), phone_e164=e164)
    return "OK"


def get_phone_number_for_account(caller: Caller, username: str, domain: str) -> Answer:
    """The account's number (masked in hide mode), ERROR_ALIAS_DOESNT_EXIST without one."""
    _domain(domain)
    rate_limits.reserve_lookup("user:" + username, caller.source_ip)
    account = _account(username)
    if not account.phone:
        raise DomainError("no_phone", "no number is linked to this account")
    return phone.mask(account.phone) if _hide() else account.phone


def is_account_activated(caller: Caller, username: str, domain: str, algo: str) -> Answer:
    """OK for an existing, enabled account: accounts exist only once a code was proven."""
    _domain(domain)
    _algorithm(algo)
    _account(username)
    return "OK"


def recover_phone_account(caller: Caller, phone_raw: str, domain: str, lang: str) -> Answer:
    """Send a code to the number's account and answer its username (rate-limited lookup)."""
    _domain(domain)
    e164 = phone.parse(phone_raw)
    rate_limits.reserve_lookup(e164, caller.source_ip)
    account = accounts.find_by_phone(e164)
    if account is None:
        raise DomainError("not_found", "no account has this number")
    if account.disabled:
        raise DomainError("account_disabled", "the account is disabled")
    signup.request_code(e164, source_ip=caller.source_ip)
    return account.username


def recover_account_from_confirmation_key(
    caller: Caller, username: str, code: str, domain: str, algo: str
) -> Answer:
    """Prove the code sent to the account's number; answer {password: HA1, algorithm}.

    The account keeps its credentials (other devices stay signed in); the HA1 is the one of
    `algo` when the account has it, else the one it has."""
    _domain(domain)
    algorithm = _algorithm(algo)
    account = _account(username)
    if not account.phone:
        raise DomainError("not_found", "no number is linked to this account")
    code = _code(code)
    pending = verification.peek(verification.SIGNUP, account.phone)
    if pending is None:
        raise DomainError("code_not_found", "no code is pending for this account")
    if pending.used:
        raise DomainError("code_used", "the code was already used")
    proven = signup.prove_number(account.phone, code)
    if proven.aor != account.aor:
        raise DomainError("not_found", "the number moved to another account")
    ha1s = proven.ha1s()
    chosen = algorithm if algorithm in ha1s else next(iter(ha1s), None)
    if chosen is None:
        raise DomainError("unsupported_algorithm", "the account has no HA1")
    # Member order matters: SDK 5.1 reads the struct's values by position (HA1, algorithm).
    return [("password", ha1s[chosen]), ("algorithm", chosen)]


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
            logger.info(
                "xmlrpc refused", extra={"method": method, "code": exc.code, "why": exc.message}
            )
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
    if content_type and content_type not in XML_CONTENT_TYPES:
        body = fault_response(INVALID_REQUEST, "send the call as text/xml")
    else:
        body = call(request.raw_body or b"", Caller(source_ip(request)))
    flush_metrics()
    return Response(body=body, status_code=200, headers={"Content-Type": "text/xml; charset=utf-8"})
