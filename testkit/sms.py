"""The SMS the service sent, as moto's SNS received them (in-process moto, or a moto server
running in this process)."""

from __future__ import annotations

import re


def sent_sms() -> list[tuple[str, str]]:
    """(E.164, text) of every SMS published to moto's SNS, oldest first."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sns.models import sns_backends

    from chalicelib.aws import region

    return list(sns_backends[DEFAULT_ACCOUNT_ID][region()].sms_messages.values())


def last_code(e164: str) -> str:
    """The code of the last SMS sent to `e164`."""
    texts = [text for number, text in sent_sms() if number == e164]
    assert texts, f"no SMS sent to {e164}"
    return re.findall(r"\d{4,10}", texts[-1])[-1]
