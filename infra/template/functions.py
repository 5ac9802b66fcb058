"""The functions: one least-privilege IAM role each (from `infra.access`), their environment and,
in the merge target, the properties folded into Chalice's own function resources.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalice.utils import to_cfn_resource_name

from infra import access
from infra.template.cfn import (
    arn,
    deployed_name,
    edge_slot_ids,
    log_group_arn,
    ref,
    role,
    sub,
    table_id,
    trust,
)
from infra.template.model import STREAM_EVENT_SETTINGS, Function, env_output_id

if TYPE_CHECKING:
    from infra.template.builder import Builder


def function_statements(b: Builder, fn: Function) -> list[dict[str, Any]]:
    acc = fn.access
    statements: list[dict[str, Any]] = [
        {
            "Sid": "OwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": log_group_arn(b.lambda_name(fn)),
        },
        {
            "Sid": "HmacKeys",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": ref("HmacKeysSecret"),
        },
    ]
    for level in (access.READ, access.WRITE):
        specs = [s for s, lvl in acc.tables if lvl == level]
        if not specs:
            continue
        resources: list[Any] = []
        for spec in specs:
            resources.append(arn(table_id(spec)))
            if spec.indexes:
                resources.append(sub("${" + table_id(spec) + ".Arn}/index/*"))
        statements.append(
            {
                "Sid": "Tables" + level.capitalize(),
                "Effect": "Allow",
                "Action": list(access.ACTIONS[level]),
                "Resource": resources,
            }
        )
    if fn.streams:
        statements.append(
            {
                "Sid": "ReadOwnStreams",
                "Effect": "Allow",
                "Action": [
                    "dynamodb:DescribeStream",
                    "dynamodb:GetRecords",
                    "dynamodb:GetShardIterator",
                ],
                "Resource": [
                    {"Fn::GetAtt": [table_id(spec), "StreamArn"]} for _, spec in fn.streams
                ],
            }
        )
        statements.append(
            {
                # ListStreams has no resource type; the event source mapping needs it.
                "Sid": "ListStreams",
                "Effect": "Allow",
                "Action": ["dynamodb:ListStreams"],
                "Resource": "*",
            }
        )
        statements.append(
            {
                "Sid": "FailedBatches",
                "Effect": "Allow",
                "Action": ["sqs:SendMessage"],
                "Resource": arn("StreamFailuresQueue"),
            }
        )
    if acc.sms:
        statements.append(
            {
                # Publishing to a phone number has no ARN; NotResource excludes every topic.
                "Sid": "SmsToPhoneNumbersOnly",
                "Effect": "Allow",
                "Action": ["sns:Publish"],
                "NotResource": sub("arn:${AWS::Partition}:sns:*:*:*"),
            }
        )
    if acc.push:
        app = "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:app/*/${AWS::StackName}-*"
        endpoint = (
            "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}"
            ":endpoint/*/${AWS::StackName}-*/*"
        )
        statements.append(
            {
                "Sid": "PushEndpointsOfOwnApplications",
                "Effect": "Allow",
                "Action": ["sns:CreatePlatformEndpoint"],
                "Resource": sub(app),
            }
        )
        statements.append(
            {
                "Sid": "PushToOwnEndpoints",
                "Effect": "Allow",
                "Action": ["sns:Publish", "sns:SetEndpointAttributes"],
                "Resource": sub(endpoint),
            }
        )
    if acc.edge_queues:
        statements.append(
            {
                "Sid": "EdgeQueues",
                "Effect": "Allow",
                "Action": ["sqs:SendMessage", "sqs:GetQueueUrl"],
                "Resource": [arn(f"EdgeQueue{k}") for k in edge_slot_ids(b.stage)],
            }
        )
    return statements


def add(b: Builder) -> None:
    env = b.function_environment()
    for fn in b.functions:
        b.resources[fn.cfn + "Role"] = role(
            trust("lambda.amazonaws.com"),
            function_statements(b, fn),
            f"Function {fn.name}: {fn.access.doc}",
        )
        if b.target == "infra":
            b.outputs[fn.cfn + "RoleArn"] = {"Value": arn(fn.cfn + "Role")}
    if b.target == "infra":
        # Chalice creates the functions; the deploy reads their environment from here.
        for name, value in env.items():
            b.outputs[env_output_id(name)] = {"Description": name, "Value": value}
        return
    for fn in b.functions:
        props: dict[str, Any] = {
            "FunctionName": deployed_name(fn.name),
            "Role": arn(fn.cfn + "Role"),
            "Environment": {"Variables": env},
        }
        if fn.streams:
            props["Events"] = {
                event_id: {
                    "Properties": {
                        "Stream": {"Fn::GetAtt": [table_id(spec), "StreamArn"]},
                        **STREAM_EVENT_SETTINGS,
                        "DestinationConfig": {
                            "OnFailure": {"Destination": arn("StreamFailuresQueue")}
                        },
                    }
                }
                for event_id, spec in fn.streams
            }
        # Functions start only once the secret holds all three keys (settings refuse less).
        b.resources[fn.cfn] = {"DependsOn": ["HmacKeys"], "Properties": props}
        # chalice names the API handler's log group after "ApiHandler", a resource that
        # does not exist ("APIHandler"); a fixed name also drops the Ref to the function.
        b.resources[to_cfn_resource_name(fn.name) + "LogGroup"] = {
            "Properties": {"LogGroupName": sub("/aws/lambda/${AWS::StackName}-" + fn.name)}
        }
