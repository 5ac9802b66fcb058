"""Sending verification codes as Transactional SMS through SNS `Publish(PhoneNumber=...)`."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import settings
from chalicelib.aws import client
from chalicelib.errors import DomainError
from chalicelib.observability import logger, pseudonym
from chalicelib.resilience import retry_after


def render(code: str) -> str:
    """The SMS text: the template with `{code}` (and `{minutes}`, the code's lifetime)."""
    s = settings.get()
    template = s.sms_template if "{code}" in s.sms_template else s.sms_template + " {code}"
    # str.replace, not str.format: a stray brace in an operator's template must not crash.
    minutes = str(max(1, s.code_ttl_seconds // 60))
    return template.replace("{minutes}", minutes).replace("{code}", code)


def send_code(e164: str, code: str) -> None:
    """Send `code` to `e164`; raise `sms_unavailable` (503, Retry-After) if SNS fails."""
    s = settings.get()
    attributes = {"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"}}
    if s.sms_sender_id:
        attributes["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": s.sms_sender_id}
    try:
        answer = client("sns").publish(
            PhoneNumber=e164, Message=render(code), MessageAttributes=attributes
        )
    except (ClientError, BotoCoreError) as exc:
        logger.warning(
            "SMS not sent", extra={"phone": pseudonym(e164), "reason": type(exc).__name__}
        )
        raise DomainError(
            "sms_unavailable",
            "the SMS could not be sent; try again later",
            headers={"Retry-After": retry_after()},  # as any other service's failure
        ) from None
    logger.info("SMS sent", extra={"phone": pseudonym(e164), "message_id": answer.get("MessageId")})
