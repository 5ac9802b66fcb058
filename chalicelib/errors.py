"""The one catalogue of error codes, with their HTTP and SIP statuses.

Domain code raises `DomainError(code, message)`; the REST layer answers
`{"error": {"code", "message"}}` with `http_status`, the SIP edge answers `sip_status`, the
XML-RPC layer maps codes to the strings the Linphone assistant understands.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.edge_contract import ErrorAnswer


@dataclass(frozen=True)
class ErrorKind:
    http_status: int
    sip_status: int
    reason: str


#: code -> (HTTP status, SIP status, SIP reason phrase)
CATALOGUE: dict[str, ErrorKind] = {
    "invalid_json": ErrorKind(400, 400, "Bad Request"),
    "invalid_field": ErrorKind(400, 400, "Bad Request"),
    "unknown_field": ErrorKind(400, 400, "Bad Request"),
    "missing_field": ErrorKind(400, 400, "Bad Request"),
    "invalid_phone": ErrorKind(400, 400, "Bad Request"),
    "invalid_username": ErrorKind(400, 400, "Bad Request"),
    "unsupported_media_type": ErrorKind(415, 415, "Unsupported Media Type"),
    "body_too_large": ErrorKind(413, 413, "Request Entity Too Large"),
    "region_not_allowed": ErrorKind(403, 403, "Forbidden"),
    "sms_not_allowed": ErrorKind(403, 403, "Forbidden"),
    "rate_limited": ErrorKind(429, 503, "Service Unavailable"),
    "code_mismatch": ErrorKind(400, 403, "Forbidden"),
    "code_expired": ErrorKind(410, 403, "Forbidden"),
    "code_not_found": ErrorKind(404, 403, "Forbidden"),
    "code_used": ErrorKind(410, 403, "Forbidden"),
    "username_taken": ErrorKind(409, 409, "Conflict"),
    "phone_taken": ErrorKind(409, 409, "Conflict"),
    "conflict": ErrorKind(409, 409, "Conflict"),
    "sms_unavailable": ErrorKind(503, 503, "Service Unavailable"),
    "push_unavailable": ErrorKind(503, 503, "Service Unavailable"),
    # AWS throttled, timed out or unreachable (chalicelib.resilience): retry after a while.
    "unavailable": ErrorKind(503, 503, "Service Unavailable"),
    "unauthorized": ErrorKind(401, 401, "Unauthorized"),
    # Password guessing (accounts.auth_guard): refused without checking, with Retry-After.
    "auth_blocked": ErrorKind(429, 403, "Forbidden"),
    "forbidden": ErrorKind(403, 403, "Forbidden"),
    "account_disabled": ErrorKind(403, 403, "Forbidden"),
    # An app-made account whose owner has not proven a phone number yet (accounts.model).
    "account_pending": ErrorKind(403, 403, "Forbidden"),
    # Tokens (accounts.tokens): unknown, used or expired, all alike; and a creation request
    # token no person has validated yet.
    "token_invalid": ErrorKind(403, 403, "Forbidden"),
    "token_not_validated": ErrorKind(404, 404, "Not Found"),
    "not_found": ErrorKind(404, 404, "Not Found"),
    "no_phone": ErrorKind(404, 404, "Not Found"),
    "phone_already_linked": ErrorKind(409, 409, "Conflict"),
    "too_many_phones": ErrorKind(413, 413, "Request Entity Too Large"),
    "unknown_domain": ErrorKind(404, 404, "Not Found"),
    "unsupported_algorithm": ErrorKind(400, 400, "Bad Request"),
    # Resource lists (RFC 4826 bodies in SUBSCRIBE), distinct so the edge can map each one.
    "list_too_large": ErrorKind(413, 413, "Request Entity Too Large"),
    "list_too_many_entries": ErrorKind(413, 413, "Request Entity Too Large"),
    "list_malformed": ErrorKind(400, 400, "Bad Request"),
    "list_forbidden_xml": ErrorKind(400, 400, "Bad Request"),
    "list_bad_encoding": ErrorKind(415, 415, "Unsupported Media Type"),
    # SIP registrar and subscriptions.
    "interval_too_brief": ErrorKind(400, 423, "Interval Too Brief"),
    "binding_out_of_order": ErrorKind(409, 500, "Server Internal Error"),
    "invalid_contact": ErrorKind(400, 400, "Bad Request"),
    "too_many_bindings": ErrorKind(409, 403, "Forbidden"),
    # PUBLISH (RFC 3903).
    "unknown_etag": ErrorKind(412, 412, "Conditional Request Failed"),
    "publication_invalid": ErrorKind(400, 400, "Bad Request"),
    "publication_not_yours": ErrorKind(403, 403, "Forbidden"),
    "internal": ErrorKind(500, 500, "Server Internal Error"),
}


class DomainError(Exception):
    """A failure the caller must be told about, named by a code of `CATALOGUE`."""

    def __init__(
        self, code: str, message: str, *, headers: dict[str, str | list[str]] | None = None
    ) -> None:
        if code not in CATALOGUE:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        # A list value is sent as repeated header lines (several WWW-Authenticate challenges).
        self.headers: dict[str, str | list[str]] = headers or {}

    @property
    def kind(self) -> ErrorKind:
        return CATALOGUE[self.code]

    @property
    def http_status(self) -> int:
        return self.kind.http_status

    @property
    def sip_status(self) -> int:
        return self.kind.sip_status

    def to_json(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}

    def to_function_answer(self) -> ErrorAnswer:
        """How a function called by the edge reports it (the edge maps `code` to SIP)."""
        return {"error": {"code": self.code, "message": self.message, "headers": self.headers}}


#: code -> the string the Linphone XML-RPC assistant (SDK 5.1) is answered. The SDK compares
#: these exact words (account_creator connector_xmlrpc.cpp); a code missing here answers
#: ERROR_UNEXPECTED, which the SDK reports as a generic failure.
XMLRPC_ANSWERS: dict[str, str] = {
    "username_taken": "ERROR_ACCOUNT_ALREADY_IN_USE",
    "phone_taken": "ERROR_ALIAS_ALREADY_IN_USE",
    "phone_already_linked": "ERROR_ALIAS_ALREADY_IN_USE",
    "sms_unavailable": "ERROR_CANNOT_SEND_SMS",
    "region_not_allowed": "ERROR_CANNOT_SEND_SMS",  # the SDK shows "invalid phone number"
    "sms_not_allowed": "ERROR_CANNOT_SEND_SMS",
    "rate_limited": "ERROR_MAX_SMS_EXCEEDED",
    "unsupported_algorithm": "ERROR_ALGO_NOT_SUPPORTED",
    "code_mismatch": "ERROR_KEY_DOESNT_MATCH",
    "code_expired": "ERROR_KEY_DOESNT_MATCH",  # the SDK's only word for a code to ask again
    # Every way a code can fail is the same word: no answer tells whether a code is pending,
    # was used (an account was just made) or is merely wrong.
    "code_not_found": "ERROR_KEY_DOESNT_MATCH",
    "code_used": "ERROR_KEY_DOESNT_MATCH",
    "not_found": "ERROR_ACCOUNT_DOESNT_EXIST",
    "no_phone": "ERROR_ALIAS_DOESNT_EXIST",
    "account_disabled": "ERROR_ACCOUNT_DISABLED",
    "unauthorized": "ERROR_PASSWORD_DOESNT_MATCH",
    "unknown_domain": "ERROR_DOMAIN_NOT_ALLOWED",
    "invalid_phone": "ERROR_PHONE_ISNT_E164",
    "invalid_username": "ERROR_USERNAME_INVALID",
    "invalid_field": "ERROR_INVALID_PARAMETERS",
    "conflict": "ERROR_TRY_AGAIN",
}


def xmlrpc_answer(code: str) -> str:
    """The XML-RPC assistant's word for a `DomainError` code."""
    return XMLRPC_ANSWERS.get(code, "ERROR_UNEXPECTED")


def rate_limited(message: str, retry_after: int) -> DomainError:
    return DomainError("rate_limited", message, headers={"Retry-After": str(max(1, retry_after))})
