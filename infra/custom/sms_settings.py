"""Custom resource: the account's SNS SMS preferences, which CloudFormation has no resource for.

Sets the monthly spend limit (USD) and the default SMS type. SNS refuses a limit above the
account's SMS spend quota (1 USD until AWS support raises it); the stack then rolls back with
that message. Deleting the stack leaves the preferences as they are: they are account-wide.
"""

import json
import urllib.request

import boto3


def respond(event: dict, status: str, reason: str = "") -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:200] or status,
            "PhysicalResourceId": "sns-sms-preferences",
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
        }
    ).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT")
    request.add_header("Content-Type", "")
    urllib.request.urlopen(request, timeout=10).read()


def attributes(props: dict) -> dict:
    return {
        "MonthlySpendLimit": str(int(float(props["MonthlySpendLimit"]))),
        "DefaultSMSType": props.get("DefaultSMSType", "Transactional"),
    }


def handler(event: dict, context: object) -> None:
    try:
        if event["RequestType"] in ("Create", "Update"):
            boto3.client("sns").set_sms_attributes(
                attributes=attributes(event["ResourceProperties"])
            )
        respond(event, "SUCCESS")
    except Exception as exc:  # noqa: BLE001 - CloudFormation must hear of any failure
        respond(event, "FAILED", f"{type(exc).__name__}: {exc}")
