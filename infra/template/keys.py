"""The HMAC keys: a retained Secrets Manager secret, filled by a custom resource at creation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.template.cfn import arn, ref, sub

if TYPE_CHECKING:
    from infra.template.builder import Builder


def add(b: Builder) -> None:
    b.resources["HmacKeysSecret"] = {
        "Type": "AWS::SecretsManager::Secret",
        # Losing PHONE_HASH_KEY orphans every phone index item: never delete or replace it.
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "Name": sub("${AWS::StackName}/hmac-keys"),
            "Description": "HMAC keys: PHONE_HASH_KEY, CODE_HASH_KEY, NONCE_KEY (JSON).",
            "GenerateSecretString": {
                "SecretStringTemplate": "{}",
                "GenerateStringKey": "PHONE_HASH_KEY",
                "PasswordLength": 64,
                "ExcludePunctuation": True,
            },
        },
    }
    b.custom_function(
        "HmacKeysFunction",
        "infra-hmac-keys",
        "keys_init.py",
        [
            {
                "Sid": "FillTheKeysSecret",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"],
                "Resource": ref("HmacKeysSecret"),
            }
        ],
    )
    b.resources["HmacKeys"] = {
        "Type": "Custom::HmacKeys",
        "Properties": {
            "ServiceToken": arn("HmacKeysFunction"),
            "SecretId": ref("HmacKeysSecret"),
        },
    }
    b.outputs["HmacKeysSecretArn"] = {"Value": ref("HmacKeysSecret")}
