"""Phone numbers: parsing to E.164 with `phonenumbers`, their type, and the PhoneIndex key."""

from __future__ import annotations

import phonenumbers

from chalicelib import settings
from chalicelib.digest import keyed_hash
from chalicelib.errors import DomainError


def parse(raw: object, default_region: str | None = None, *, field: str = "phone") -> str:
    """Return the E.164 form of `raw` or raise `invalid_phone` naming `field`.

    Accepts E.164, `00` international prefixes and national numbers of `default_region`.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise DomainError("invalid_phone", f"{field}: a phone number string is required")
    if len(raw) > 64:
        raise DomainError("invalid_phone", f"{field}: too long to be a phone number")
    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    region = (default_region or settings.get().default_region or "").upper() or None
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else region)
    except phonenumbers.NumberParseException as exc:
        raise DomainError("invalid_phone", f"{field}: not a phone number ({exc})") from None
    if not phonenumbers.is_possible_number(number) or not phonenumbers.is_valid_number(number):
        raise DomainError("invalid_phone", f"{field}: not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def try_parse(raw: str, default_region: str | None) -> str | None:
    """Like `parse` but answering None for anything that is not a valid number."""
    try:
        return parse(raw, default_region)
    except DomainError:
        return None


def region_of(e164: str) -> str | None:
    """ISO region of an E.164 number (e.g. "FR"), or None."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return None


_TYPE_NAMES = {
    value: name for name, value in vars(phonenumbers.PhoneNumberType).items() if name.isupper()
}


def number_type(e164: str) -> str:
    """phonenumbers' type of a valid E.164 number: MOBILE, FIXED_LINE_OR_MOBILE, PREMIUM_RATE,
    PERSONAL_NUMBER, PAGER, SHARED_COST, VOIP, FIXED_LINE, ... (UNKNOWN if unparseable)."""
    try:
        kind = phonenumbers.number_type(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return "UNKNOWN"
    return _TYPE_NAMES.get(kind, "UNKNOWN")


def valid_region(region: object) -> str:
    """Check a `default_region` field: a two-letter region phonenumbers knows."""
    if not isinstance(region, str) or region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise DomainError("invalid_field", "default_region: expected an ISO 3166 region like FR")
    return region.upper()


def phone_hash(e164: str) -> str:
    """The PhoneIndex partition key: hex HMAC-SHA256(phone hash key, E.164)."""
    return keyed_hash(settings.get().phone_hash_key, e164)
