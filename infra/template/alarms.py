"""The alarms and their SNS topic: functions, tables, SMS spend, the edge, abuse limits, queues."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib import tables
from infra.template.cfn import edge_slot_ids, ref, table_id

if TYPE_CHECKING:
    from infra.template.builder import Builder


def alarm(b: Builder, logical: str, description: str, props: dict[str, Any]) -> None:
    b.resources[logical] = {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": description,
            "AlarmActions": [ref("AlarmTopic")],
            "OKActions": [ref("AlarmTopic")],
            "TreatMissingData": "notBreaching",
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "EvaluationPeriods": 1,
            **props,
        },
    }


def add(b: Builder) -> None:
    r = b.resources
    r["AlarmTopic"] = {"Type": "AWS::SNS::Topic", "Properties": {}}
    r["AlarmEmailSubscription"] = {
        "Type": "AWS::SNS::Subscription",
        "Condition": "HasAlarmEmail",
        "Properties": {
            "TopicArn": ref("AlarmTopic"),
            "Protocol": "email",
            "Endpoint": ref("AlarmEmail"),
        },
    }
    b.outputs["AlarmTopicArn"] = {"Value": ref("AlarmTopic")}
    for fn in b.functions:
        dims = [{"Name": "FunctionName", "Value": b.function_name(fn)}]
        alarm(
            b,
            fn.cfn + "ErrorsAlarm",
            f"Lambda {fn.name}: errors",
            {
                "Namespace": "AWS/Lambda",
                "MetricName": "Errors",
                "Dimensions": dims,
                "Statistic": "Sum",
                "Period": 300,
                "Threshold": b.stage.lambda_errors_threshold,
            },
        )
        alarm(
            b,
            fn.cfn + "ThrottlesAlarm",
            f"Lambda {fn.name}: throttled invocations",
            {
                "Namespace": "AWS/Lambda",
                "MetricName": "Throttles",
                "Dimensions": dims,
                "Statistic": "Sum",
                "Period": 300,
                "Threshold": 1,
            },
        )
        if fn.streams:
            alarm(
                b,
                fn.cfn + "IteratorAgeAlarm",
                f"Lambda {fn.name}: live updates lag more than a minute",
                {
                    "Namespace": "AWS/Lambda",
                    "MetricName": "IteratorAge",
                    "Dimensions": dims,
                    "Statistic": "Maximum",
                    "Period": 60,
                    "EvaluationPeriods": 3,
                    "Threshold": 60000,
                },
            )
    for spec in tables.ALL:
        dims = [{"Name": "TableName", "Value": ref(table_id(spec))}]
        metrics = [
            {
                "Id": short,
                "ReturnData": False,
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/DynamoDB",
                        "MetricName": metric,
                        "Dimensions": dims,
                    },
                    "Period": 300,
                    "Stat": "Sum",
                },
            }
            for short, metric in (("r", "ReadThrottleEvents"), ("w", "WriteThrottleEvents"))
        ]
        metrics.append(
            {"Id": "throttled", "Expression": "r + w", "Label": "Throttled", "ReturnData": True}
        )
        alarm(
            b,
            table_id(spec) + "ThrottleAlarm",
            f"DynamoDB {spec.logical}: throttled requests (hot partition or table limit)",
            {"Metrics": metrics, "Threshold": 1},
        )
    alarm(
        b,
        "SmsSpendAlarm",
        "SNS SMS spend this month reached SmsSpendAlarmUsd",
        {
            "Namespace": "AWS/SNS",
            "MetricName": "SMSMonthToDateSpentUSD",
            "Statistic": "Maximum",
            "Period": 300,
            "Threshold": ref("SmsSpendAlarmUsd"),
        },
    )
    alarm(
        b,
        "EdgeUnhealthyAlarm",
        "SIP edge: a task fails the load balancer's health check",
        {
            "Namespace": "AWS/NetworkELB",
            "MetricName": "UnHealthyHostCount",
            "Dimensions": [
                {
                    "Name": "LoadBalancer",
                    "Value": {"Fn::GetAtt": ["SipLoadBalancer", "LoadBalancerFullName"]},
                },
                {
                    "Name": "TargetGroup",
                    "Value": {"Fn::GetAtt": ["SipTargetGroup", "TargetGroupFullName"]},
                },
            ],
            "Statistic": "Maximum",
            "Period": 60,
            "EvaluationPeriods": 3,
            "Threshold": 1,
        },
    )
    # Abuse limits: the service's own EMF metrics (chalicelib.observability).
    for logical, metric, description, threshold in (
        (
            "DiscoveryBudgetDryAlarm",
            "DiscoveryBudgetDry",
            "Accounts ran out of discovery tokens (a scraper, or a huge address book)",
            10,
        ),
        ("AuthBlockedAlarm", "AuthBlocked", "Sign-ins refused for password guessing", 100),
        ("SipFloodBansAlarm", "SipFloodBans", "SIP edge banned flooding addresses", 5),
    ):
        alarm(
            b,
            logical,
            description,
            {
                "Namespace": "SmartContacts",
                "MetricName": metric,
                "Dimensions": [{"Name": "service", "Value": "smart-contacts"}],
                "Statistic": "Sum",
                "Period": 300,
                "Threshold": threshold,
            },
        )
    for k in edge_slot_ids(b.stage):
        alarm(
            b,
            f"EdgeQueue{k}AgeAlarm",
            f"SIP edge {k} does not drain its queue (live updates stuck)",
            {
                "Namespace": "AWS/SQS",
                "MetricName": "ApproximateAgeOfOldestMessage",
                "Dimensions": [
                    {
                        "Name": "QueueName",
                        "Value": {"Fn::GetAtt": [f"EdgeQueue{k}", "QueueName"]},
                    }
                ],
                "Statistic": "Maximum",
                "Period": 60,
                "EvaluationPeriods": 2,
                "Threshold": 60,
            },
        )
    alarm(
        b,
        "StreamFailuresAlarm",
        "Live-update stream batches failed after retries (see the stream-failures queue)",
        {
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [
                {
                    "Name": "QueueName",
                    "Value": {"Fn::GetAtt": ["StreamFailuresQueue", "QueueName"]},
                }
            ],
            "Statistic": "Maximum",
            "Period": 300,
            "Threshold": 1,
        },
    )
