"""SMS through SNS: the account's SMS preferences (monthly spend limit), set by a custom
resource."""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.template.cfn import arn, ref

if TYPE_CHECKING:
    from infra.template.builder import Builder


def add(b: Builder) -> None:
    b.custom_function(
        "SmsPreferencesFunction",
        "infra-sms-preferences",
        "sms_settings.py",
        [
            {
                # SetSMSAttributes has no resource type: it acts on the account.
                "Sid": "AccountSmsPreferences",
                "Effect": "Allow",
                "Action": ["sns:SetSMSAttributes"],
                "Resource": "*",
            }
        ],
    )
    b.resources["SmsPreferences"] = {
        "Type": "Custom::SmsPreferences",
        "Properties": {
            "ServiceToken": arn("SmsPreferencesFunction"),
            "MonthlySpendLimit": ref("SmsMonthlySpendLimitUsd"),
            "DefaultSMSType": "Transactional",
        },
    }
