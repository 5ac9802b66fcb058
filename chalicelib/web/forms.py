"""Form bodies in, problems out: the posted fields, and what a domain error means for the
person filling the form (which field it belongs to, the catalogue's words for it).

Errors come from the same domain calls as the REST API's (`chalicelib.errors` codes); this
module only chooses where each is shown. Every way a code can fail is one message, as in the
Linphone assistant: no page tells whether a code is pending, used, expired or merely wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from chalicelib.errors import DomainError
from chalicelib.web import catalogue

#: Most fields any of our forms posts; more is no form of ours.
MAX_FIELDS = 20

#: error code -> (the field it is shown next to, or None for the whole form; catalogue key)
_WHERE: dict[str, tuple[str | None, str]] = {
    "invalid_phone": ("phone", "error.phone_invalid"),
    "region_not_allowed": ("phone", "error.phone_region"),
    "sms_not_allowed": ("phone", "error.phone_not_mobile"),
    "phone_already_linked": ("phone", "error.phone_already_yours"),
    "invalid_username": ("username", "error.username_invalid"),
    "username_taken": ("username", "error.username_taken"),
    "code_mismatch": ("code", "error.code_wrong"),
    "code_expired": ("code", "error.code_wrong"),
    "code_not_found": ("code", "error.code_wrong"),
    "code_used": ("code", "error.code_wrong"),
    "unauthorized": ("password", "error.signin_wrong"),
    "auth_blocked": (None, "error.signin_blocked"),
    "rate_limited": (None, "error.rate_limited"),
    "sms_unavailable": (None, "error.sms_unavailable"),
    "unavailable": (None, "error.unavailable"),
    "account_disabled": (None, "error.account_disabled"),
    "not_found": (None, "error.recover_no_account"),
    "no_phone": (None, "error.no_phone"),
    "conflict": (None, "error.conflict"),
    "account_pending": (None, "error.account_pending"),
}
#: invalid_field messages start with the field they are about ("password: 8 to 256 ...").
_INVALID_FIELD: dict[str, str] = {
    "password": "error.password_rules",
    "code": "error.code_format",
    "default_region": "error.region",
}


class BadForm(Exception):
    """A body that is no form of ours: too large, not form-encoded, malformed."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def parse(content_type: str, body: bytes, *, max_bytes: int) -> dict[str, str]:
    """The fields of an `application/x-www-form-urlencoded` body (the first of each name)."""
    if len(body) > max_bytes:
        raise BadForm(413)
    if content_type != "application/x-www-form-urlencoded":
        raise BadForm(415)
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise BadForm(400) from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


@dataclass
class Problems:
    """What went wrong with one posted form, in the page's language."""

    fields: dict[str, str] = field(default_factory=dict)
    form: list[str] = field(default_factory=list)
    status: int = 400
    headers: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.fields or self.form)

    def add(self, name: str | None, message: str) -> None:
        if name is None:
            self.form.append(message)
        else:
            self.fields.setdefault(name, message)

    @classmethod
    def of(cls, exc: DomainError, lang: str, *, fields_shown: frozenset[str]) -> Problems:
        """The problem a domain error is, shown next to its field when the form has it."""
        where, key = _WHERE.get(exc.code, (None, "error.internal"))
        params: dict[str, object] = {}
        if exc.code == "invalid_field":
            named = exc.message.split(":", 1)[0].strip()
            key = _INVALID_FIELD.get(named, "error.invalid")
            where = "region" if named == "default_region" else named
        if key == "error.password_rules":
            from chalicelib import settings

            params["minimum"] = settings.get().password_min_length
        retry = exc.headers.get("Retry-After")
        headers = {"Retry-After": retry} if isinstance(retry, str) else {}
        if headers:
            params["wait"] = wait_text(int(headers["Retry-After"]), lang)
        problems = cls(status=exc.http_status, headers=headers)
        problems.add(where if where in fields_shown else None, catalogue.text(key, lang, **params))
        return problems


def wait_text(seconds: int, lang: str) -> str:
    """A Retry-After as people say it: "a minute", "about 3 hours"."""
    if seconds <= 60:
        return catalogue.text("wait.minute", lang)
    if seconds < 3600:
        return catalogue.text("wait.minutes", lang, n=-(-seconds // 60))
    if seconds < 2 * 3600:
        return catalogue.text("wait.hour", lang)
    return catalogue.text("wait.hours", lang, n=-(-seconds // 3600))
