"""Push notifications to a Linphone app through SNS mobile push: one platform application per
provider (FCM, APNs, APNs sandbox), one platform endpoint per device token.

The push parameters are those of RFC 8599 as the apps send them (`pn_provider`, `pn_param`,
`pn_prid`); the payloads are shaped as Flexisip's pusher shapes them for FlexiAPI, which is
what the apps read: on FCM a high-priority data message whose `custom-payload` holds the JSON
text of what is sent, on APNs a background notification whose top-level `customPayload` holds
it. SNS keeps one endpoint per device token (creating it again is idempotent) and disables it
when the provider reports the token dead; an endpoint found disabled is enabled again once.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import settings
from chalicelib.aws import client
from chalicelib.digest import keyed_hash
from chalicelib.errors import DomainError
from chalicelib.observability import logger
from chalicelib.resilience import retry_after

#: pn_provider -> SNS's message key (the platform of its application).
PROVIDERS = {"fcm": "GCM", "apns": "APNS", "apns.dev": "APNS_SANDBOX"}
_PARAM = re.compile(r"[\w.]{1,255}", re.ASCII)
_PRID = re.compile(r"[\w:-]{1,4096}", re.ASCII)


@dataclass(frozen=True)
class Device:
    """Where a push goes: the app's RFC 8599 parameters."""

    provider: str  # fcm, apns or apns.dev
    param: str  # FCM: the sender id; APNs: <team id>.<bundle id>.<services>
    prid: str  # the device token

    @classmethod
    def parse(cls, provider: object, param: object, prid: object) -> Device:
        """The device, or 400 `invalid_field` naming the parameter (FlexiAPI's rules)."""
        if not isinstance(provider, str) or provider not in PROVIDERS:
            raise DomainError("invalid_field", "pn_provider: expected fcm, apns or apns.dev")
        if not isinstance(param, str) or not _PARAM.fullmatch(param):
            raise DomainError("invalid_field", "pn_param: letters, digits, _ and . only")
        if not isinstance(prid, str) or not _PRID.fullmatch(prid):
            raise DomainError("invalid_field", "pn_prid: letters, digits, _, - and : only")
        return cls(provider, param, prid)

    @property
    def key(self) -> str:
        """A keyed hash naming the device in budgets (no token kept in clear)."""
        text = f"{self.provider}|{self.param}|{self.prid}"
        return keyed_hash(settings.get().code_hash_key, text, length=32)


def _application(provider: str) -> str:
    s = settings.get()
    arns = {
        "fcm": s.push_fcm_application_arn,
        "apns": s.push_apns_application_arn,
        "apns.dev": s.push_apns_sandbox_application_arn,
    }
    arn = arns[provider]
    if not arn:
        raise DomainError(
            "invalid_field", f"pn_provider: {provider} notifications are not set up on this service"
        )
    return arn


def check_available(device: Device) -> None:
    """400 `invalid_field` unless this service can push to the device's provider."""
    _application(device.provider)


def message(device: Device, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The SNS `Message` (MessageStructure json) and message attributes pushing `payload`."""
    custom = json.dumps(payload, separators=(",", ":"))
    key = PROVIDERS[device.provider]
    if device.provider == "fcm":
        # The data keys Flexisip's pusher sends beside custom-payload: the SDK's Firebase
        # service hands the whole data map to the app, which reads custom-payload.
        data = {
            "custom-payload": custom,
            "uuid": str(secrets.token_hex(16)),
            "from-uri": "",
            "display-name": "",
            "call-id": "",
            "sip-from": "",
            "loc-key": "",
            "loc-args": "",
            "send-time": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        }
        body: dict[str, Any] = {
            "fcmV1Message": {"message": {"android": {"priority": "high", "data": data}}}
        }
        return json.dumps({key: json.dumps(body)}), {}
    body = {"aps": {"badge": 0, "content-available": 1}, "customPayload": payload}
    attributes = {
        "AWS.SNS.MOBILE.APNS.PUSH_TYPE": {"DataType": "String", "StringValue": "background"},
        # Apple delivers background notifications only at priority 5.
        "AWS.SNS.MOBILE.APNS.PRIORITY": {"DataType": "String", "StringValue": "5"},
    }
    return json.dumps({key: json.dumps(body)}), attributes


def _endpoint(device: Device) -> str:
    answer = client("sns").create_platform_endpoint(
        PlatformApplicationArn=_application(device.provider), Token=device.prid
    )
    return str(answer["EndpointArn"])


def send(device: Device, payload: dict[str, Any]) -> None:
    """Push `payload` to the device; raise `push_unavailable` (503, Retry-After) if SNS fails."""
    structured, attributes = message(device, payload)
    try:
        endpoint = _endpoint(device)
        publish = {
            "TargetArn": endpoint,
            "MessageStructure": "json",
            "Message": structured,
            "MessageAttributes": attributes,
        }
        try:
            answer = client("sns").publish(**publish)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "EndpointDisabled":
                raise
            # Disabled after an earlier failure; the app just gave its token again.
            client("sns").set_endpoint_attributes(
                EndpointArn=endpoint, Attributes={"Enabled": "true"}
            )
            answer = client("sns").publish(**publish)
    except (ClientError, BotoCoreError) as exc:
        logger.warning(
            "push not sent", extra={"provider": device.provider, "reason": type(exc).__name__}
        )
        raise DomainError(
            "push_unavailable",
            "the notification could not be sent; try again later",
            headers={"Retry-After": retry_after()},
        ) from None
    logger.info(
        "push sent", extra={"provider": device.provider, "message_id": answer.get("MessageId")}
    )
