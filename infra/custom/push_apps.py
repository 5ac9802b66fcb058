"""Custom resource: the SNS platform applications the Linphone apps' creation tokens are pushed
through (FCM, APNs, APNs sandbox), which CloudFormation has no resource for.

Their credentials come from a Secrets Manager secret the operator fills (JSON: {"fcm": {...},
"apns": {...}, "apns.dev": {...}}, each the SNS platform application's attributes, e.g.
PlatformCredential, PlatformPrincipal, ApplePlatformTeamID, ApplePlatformBundleID); a provider
missing from it, or no secret, gets no application (the service then refuses that provider).
Answers each application's ARN (Fcm, Apns, ApnsSandbox; "" for none). Deleting the stack deletes
the applications named after it.
"""

import json
import urllib.request
from typing import Any

import boto3

PLATFORMS = {
    "fcm": ("GCM", "Fcm"),
    "apns": ("APNS", "Apns"),
    "apns.dev": ("APNS_SANDBOX", "ApnsSandbox"),
}


def respond(event: dict, status: str, reason: str = "", data: dict | None = None) -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:200] or status,
            "PhysicalResourceId": "sns-platform-applications",
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": data or {},
        }
    ).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT")
    request.add_header("Content-Type", "")
    urllib.request.urlopen(request, timeout=10).read()


def name(prefix: str, platform: str) -> str:
    return f"{prefix}-{platform.lower().replace('_', '-')}"


def apply(props: dict, sns: Any, secrets: Any) -> dict:
    """Create (or update) the applications the secret has credentials for; their ARNs."""
    data = {key: "" for _, key in PLATFORMS.values()}
    credentials = {}
    if props.get("SecretId"):
        credentials = json.loads(
            secrets.get_secret_value(SecretId=props["SecretId"])["SecretString"]
        )
    for provider, (platform, key) in PLATFORMS.items():
        attributes = credentials.get(provider)
        if attributes:
            arn = sns.create_platform_application(
                Name=name(props["Prefix"], platform), Platform=platform, Attributes=attributes
            )["PlatformApplicationArn"]
            sns.set_platform_application_attributes(
                PlatformApplicationArn=arn, Attributes=attributes
            )
            data[key] = arn
    return data


def remove(props: dict, sns: Any) -> None:
    names = {name(props["Prefix"], platform) for platform, _ in PLATFORMS.values()}
    for page in sns.get_paginator("list_platform_applications").paginate():
        for app in page["PlatformApplications"]:
            if app["PlatformApplicationArn"].rsplit("/", 1)[-1] in names:
                sns.delete_platform_application(
                    PlatformApplicationArn=app["PlatformApplicationArn"]
                )


def handler(event: dict, context: object) -> None:
    try:
        props = event["ResourceProperties"]
        sns = boto3.client("sns")
        if event["RequestType"] == "Delete":
            remove(props, sns)
            respond(event, "SUCCESS")
        else:
            respond(event, "SUCCESS", data=apply(props, sns, boto3.client("secretsmanager")))
    except Exception as exc:  # noqa: BLE001 - CloudFormation must hear of any failure
        respond(event, "FAILED", f"{type(exc).__name__}: {exc}")
