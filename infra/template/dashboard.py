"""The operator's dashboard: one page of the service (edge, functions, tables, streams, SMS)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from chalicelib import tables
from infra.template.cfn import edge_slot_ids, ref, sub
from infra.template.model import (
    EDGE_REQUESTS_METRIC,
    SERVICE_DIMENSION,
    Function,
    metrics_namespace,
)

if TYPE_CHECKING:
    from infra.template.builder import Builder


def add(b: Builder) -> None:
    """One page of the service: the edge, the functions, the tables, the streams, SMS."""
    ns = metrics_namespace()
    emf = ["service", SERVICE_DIMENSION]  # Powertools adds this dimension to every metric
    fns = b.functions
    stream_fns = [fn for fn in fns if fn.streams]
    slots = edge_slot_ids(b.stage)
    name = "${AWS::StackName}-"

    def per_function(metric: str, stat: str, which: list[Function]) -> list[list[Any]]:
        return [
            ["AWS/Lambda", metric, "FunctionName", b.lambda_name(fn), {"stat": stat}]
            for fn in which
        ]

    def per_table(metric: str) -> list[list[Any]]:
        return [
            ["AWS/DynamoDB", metric, "TableName", name + spec.logical, {"label": spec.logical}]
            for spec in tables.ALL
        ]

    def per_service(metric: str) -> list[list[Any]]:
        return [
            ["AWS/ECS", metric, "ClusterName", name + "edge", "ServiceName", f"edge-{k}"]
            for k in slots
        ]

    widgets: list[tuple[str, str, list[list[Any]]]] = [
        # (title, default stat, metrics)
        (
            "SIP requests by method and response class (edge)",
            "Sum",
            [
                [
                    {
                        "id": "sip",
                        "label": "",
                        "expression": f"SEARCH('{{{ns},Class,Method,service}} "
                        f"MetricName=\"{EDGE_REQUESTS_METRIC}\"', 'Sum', 60)",
                    }
                ]
            ],
        ),
        (
            "NOTIFYs sent and failed (edge)",
            "Sum",
            [[ns, "NotifiesSent", *emf], [ns, "NotifyFailures", *emf]],
        ),
        (
            "Lookups: entries, users found, DynamoDB calls",
            "Sum",
            [[ns, m, *emf] for m in ("EntriesLookedUp", "UsersFound", "LookupCalls")],
        ),
        (
            "Sign-ups, SMS codes sent, live updates",
            "Sum",
            [[ns, m, *emf] for m in ("Signups", "CodesSent", "CodeFailures", "LiveUpdates")],
        ),
        (
            "SMS spend this month (USD)",
            "Maximum",
            [["AWS/SNS", "SMSMonthToDateSpentUSD"]],
        ),
        (
            "DynamoDB consumed read capacity per table",
            "Sum",
            per_table("ConsumedReadCapacityUnits"),
        ),
        (
            "DynamoDB consumed write capacity per table",
            "Sum",
            per_table("ConsumedWriteCapacityUnits"),
        ),
        (
            "DynamoDB throttled requests per table",
            "Sum",
            per_table("ReadThrottleEvents") + per_table("WriteThrottleEvents"),
        ),
        ("Lambda duration p99 (ms)", "p99", per_function("Duration", "p99", fns)),
        ("Lambda errors", "Sum", per_function("Errors", "Sum", fns)),
        ("Lambda throttles", "Sum", per_function("Throttles", "Sum", fns)),
        (
            "Stream iterator age (ms): how late live updates run",
            "Maximum",
            per_function("IteratorAge", "Maximum", stream_fns),
        ),
        (
            "Edge queues: age of the oldest message (s)",
            "Maximum",
            [
                ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", name + f"edge-{k}"]
                for k in slots
            ],
        ),
        ("Edge CPU (%)", "Maximum", per_service("CPUUtilization")),
        ("Edge memory (%)", "Maximum", per_service("MemoryUtilization")),
        (
            "Edge: open TCP/TLS connections and live dialogs",
            "Maximum",
            [[ns, "OpenConnections", *emf], [ns, "Dialogs", *emf]],
        ),
    ]
    body = {
        "widgets": [
            {
                "type": "metric",
                "x": (i % 2) * 12,
                "y": (i // 2) * 6,
                "width": 12,
                "height": 6,
                "properties": {
                    "title": title,
                    "region": "${AWS::Region}",
                    "view": "timeSeries",
                    "stacked": False,
                    "period": 60,
                    "stat": stat,
                    "metrics": metrics,
                },
            }
            for i, (title, stat, metrics) in enumerate(widgets)
        ]
    }
    b.resources["Dashboard"] = {
        "Type": "AWS::CloudWatch::Dashboard",
        "Properties": {
            "DashboardName": sub("${AWS::StackName}"),
            "DashboardBody": sub(json.dumps(body, separators=(",", ":"))),
        },
    }
    b.outputs["DashboardName"] = {"Value": ref("Dashboard")}
