"""Custom resource: fill the HMAC-keys secret with any of its three keys that is missing.

Secrets Manager generates one key per secret; the service reads three from one JSON secret.
Existing keys are never replaced: a new PHONE_HASH_KEY would orphan every phone index item.
"""

import json
import secrets
import urllib.request
from typing import Any

import boto3

KEYS = ("PHONE_HASH_KEY", "CODE_HASH_KEY", "NONCE_KEY")


def respond(event: dict, status: str, reason: str = "") -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:200] or status,
            "PhysicalResourceId": event.get("PhysicalResourceId") or event["LogicalResourceId"],
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
        }
    ).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT")
    request.add_header("Content-Type", "")
    urllib.request.urlopen(request, timeout=10).read()


def fill(secret_id: str, client: Any) -> list[str]:
    """Add the missing keys; answer the names added."""
    current = json.loads(client.get_secret_value(SecretId=secret_id)["SecretString"] or "{}")
    missing = [k for k in KEYS if not current.get(k)]
    if missing:
        current.update({k: secrets.token_urlsafe(48) for k in missing})
        client.put_secret_value(SecretId=secret_id, SecretString=json.dumps(current))
    return missing


def handler(event: dict, context: object) -> None:
    try:
        # Delete leaves the secret alone (it is retained with the tables it protects).
        if event["RequestType"] in ("Create", "Update"):
            fill(event["ResourceProperties"]["SecretId"], boto3.client("secretsmanager"))
        respond(event, "SUCCESS")
    except Exception as exc:  # noqa: BLE001 - CloudFormation must hear of any failure
        respond(event, "FAILED", f"{type(exc).__name__}: {exc}")
