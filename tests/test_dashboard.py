"""The operator's dashboard names only metrics that exist: EMF metrics the code emits, with the
dimensions it gives them, or metrics AWS publishes for the resource kinds the stack has."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra import template

ROOT = Path(__file__).resolve().parent.parent
EMF_CALL = re.compile(r"""(?:add_metric|single_metric|_emit)\(\s*(?:name=)?["'](\w+)["']""")
SEARCH = re.compile(r"SEARCH\('\{([^}]*)\}\s+MetricName=\"(\w+)\"'")

#: What AWS publishes, per namespace (CloudWatch user guide, "AWS services that publish
#: CloudWatch metrics"), with the dimension each metric is read by here.
AWS_METRICS: dict[str, tuple[set[str], set[tuple[str, ...]]]] = {
    "AWS/Lambda": (
        {"Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions",
         "IteratorAge", "DeadLetterErrors", "DestinationDeliveryFailures"},
        {("FunctionName",)},
    ),
    "AWS/DynamoDB": (
        {"ConsumedReadCapacityUnits", "ConsumedWriteCapacityUnits", "ReadThrottleEvents",
         "WriteThrottleEvents", "ThrottledRequests", "SuccessfulRequestLatency", "SystemErrors",
         "UserErrors"},
        {("TableName",)},
    ),
    "AWS/SQS": (
        {"ApproximateAgeOfOldestMessage", "ApproximateNumberOfMessagesVisible",
         "NumberOfMessagesSent", "NumberOfMessagesReceived", "NumberOfMessagesDeleted"},
        {("QueueName",)},
    ),
    "AWS/ECS": ({"CPUUtilization", "MemoryUtilization"}, {("ClusterName", "ServiceName")}),
    "AWS/SNS": ({"SMSMonthToDateSpentUSD", "SMSSuccessRate", "NumberOfMessagesPublished"}, {()}),
    "AWS/NetworkELB": (
        {"ActiveFlowCount", "ActiveFlowCount_TCP", "ActiveFlowCount_UDP", "NewFlowCount",
         "UnHealthyHostCount", "HealthyHostCount"},
        {("LoadBalancer",), ("LoadBalancer", "TargetGroup")},
    ),
}  # fmt: skip
#: Dimensions the code puts on its EMF metrics: Powertools' service, the edge's per request.
EMF_DIMENSIONS = {(), ("Class", "Method")}


def emitted() -> set[str]:
    """EMF metric names in the functions' and the edge's code."""
    names: set[str] = set()
    for folder in ("chalicelib", "sip_edge"):
        for path in (ROOT / folder).rglob("*.py"):
            names.update(EMF_CALL.findall(path.read_text()))
    return names


def dashboard_metrics(t: dict[str, Any]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(namespace, metric, dimension names) of every metric a widget draws."""
    body = json.loads(t["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"])
    out: list[tuple[str, str, tuple[str, ...]]] = []
    for widget in body["widgets"]:
        for row in widget["properties"]["metrics"]:
            if isinstance(row[0], dict):
                found = SEARCH.search(row[0]["expression"])
                assert found, row
                namespace, *dims = [p.strip() for p in found.group(1).split(",")]
                out.append((namespace, found.group(2), tuple(sorted(dims))))
                continue
            fields = [f for f in row if not isinstance(f, dict)]
            namespace, metric, *pairs = fields
            out.append((namespace, metric, tuple(sorted(pairs[0::2]))))
    return out


@pytest.mark.parametrize("target", template.TARGETS)
@pytest.mark.parametrize("stage", sorted(template.STAGES))
def test_every_dashboard_metric_is_emitted_or_published(stage, target):
    t = template.build(stage, target=target)
    ours = template.metrics_namespace()
    code = emitted()
    for namespace, metric, dims in dashboard_metrics(t):
        if namespace == ours:
            assert metric in code, f"{metric}: no add_metric/single_metric in the code emits it"
            assert tuple(d for d in dims if d != "service") in EMF_DIMENSIONS, (metric, dims)
            assert "service" in dims or not dims
        else:
            names, dimension_sets = AWS_METRICS[namespace]
            assert metric in names, f"{namespace} publishes no {metric}"
            assert dims in dimension_sets, (namespace, metric, dims)


def test_dashboard_covers_what_the_operator_asked_for():
    t = template.build("prod", target="infra")
    drawn = {(ns, m) for ns, m, _ in dashboard_metrics(t)}
    ours = template.metrics_namespace()
    wanted = {
        (ours, "SipRequests"),
        (ours, "NotifiesSent"),
        (ours, "EntriesLookedUp"),
        (ours, "UsersFound"),
        (ours, "LookupCalls"),
        (ours, "Signups"),
        (ours, "CodesSent"),
        ("AWS/SNS", "SMSMonthToDateSpentUSD"),
        ("AWS/DynamoDB", "ConsumedReadCapacityUnits"),
        ("AWS/DynamoDB", "ConsumedWriteCapacityUnits"),
        ("AWS/DynamoDB", "ReadThrottleEvents"),
        ("AWS/DynamoDB", "WriteThrottleEvents"),
        ("AWS/Lambda", "Duration"),
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
        ("AWS/Lambda", "IteratorAge"),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
        ("AWS/ECS", "CPUUtilization"),
        ("AWS/ECS", "MemoryUtilization"),
        (ours, "OpenConnections"),
    }
    assert wanted <= drawn, sorted(wanted - drawn)
    body = t["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert '"p99"' in body
    # Every function, table and edge slot has its line.
    for fn in template.functions_of(template.load_app()):
        assert f'"${{AWS::StackName}}-{fn.name}"' in body or fn.kind == "api"
    for k in range(1, template.STAGES["prod"].edge_max_slots + 1):
        assert f'"edge-{k}"' in body


def test_emitted_names_are_found_where_the_code_emits_them():
    # The grep must see the names it is meant to see, or the first test proves nothing.
    assert {"EntriesLookedUp", "Signups", "SipRequests", "NotifiesSent", "LiveUpdates"} <= emitted()
