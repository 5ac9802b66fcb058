"""Push notifications to the Linphone apps (their account-creation tokens): the SNS platform
applications, made by a custom resource from the credentials secret the operator names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.template.cfn import arn, ref, sub

if TYPE_CHECKING:
    from infra.template.builder import Builder

#: The environment variable naming each application, and the custom resource's answer for it.
APPLICATIONS = (
    ("PUSH_FCM_APPLICATION_ARN", "Fcm"),
    ("PUSH_APNS_APPLICATION_ARN", "Apns"),
    ("PUSH_APNS_SANDBOX_APPLICATION_ARN", "ApnsSandbox"),
)


def add(b: Builder) -> None:
    b.custom_function(
        "PushApplicationsFunction",
        "infra-push-applications",
        "push_apps.py",
        [
            {
                # Platform applications are created by name: no ARN before they exist.
                "Sid": "PlatformApplications",
                "Effect": "Allow",
                "Action": [
                    "sns:CreatePlatformApplication",
                    "sns:SetPlatformApplicationAttributes",
                    "sns:DeletePlatformApplication",
                    "sns:ListPlatformApplications",
                ],
                "Resource": "*",
            },
            {
                "Sid": "ReadThePushCredentials",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue"],
                # Secrets Manager appends 6 characters to a secret's name in its ARN.
                "Resource": sub(
                    "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}"
                    ":secret:${PushCredentialsSecret}-??????"
                ),
            },
        ],
    )
    b.resources["PushApplications"] = {
        "Type": "Custom::PushApplications",
        "Properties": {
            "ServiceToken": arn("PushApplicationsFunction"),
            "SecretId": ref("PushCredentialsSecret"),
            "Prefix": sub("${AWS::StackName}"),
        },
    }


def environment() -> dict[str, object]:
    """The functions' variables naming the applications ("" for a provider not set up)."""
    return {variable: {"Fn::GetAtt": ["PushApplications", key]} for variable, key in APPLICATIONS}
