"""Assembles one template: a `Builder` holds what the resource families add to it.

Each family is a module with `add(builder)`: parameters, tables, keys, sms, queues, functions,
edge (ECS Fargate behind an NLB), alarms, dashboard, added in that order. The builder also
answers what depends on the target ("merge" or "infra"): how a function is named and reached.
"""

from __future__ import annotations

from typing import Any

from chalicelib import tables
from infra.template import (
    alarms,
    dashboard,
    edge,
    functions,
    keys,
    parameters,
    push,
    queues,
    sms,
)
from infra.template import tables as table_resources
from infra.template.cfn import arn, deployed_name, log_group_arn, ref, role, sub, table_id, trust
from infra.template.model import (
    CUSTOM_RUNTIME,
    ROOT,
    SIP_PORT,
    STAGES,
    TARGETS,
    TLS_PORT,
    Function,
    Stage,
    functions_of,
    load_app,
)


class Builder:
    """One template of one stage for one target, filled by the resource families in order."""

    def __init__(self, stage: Stage, functions: list[Function], target: str = "merge") -> None:
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; one of {TARGETS}")
        self.stage = stage
        self.functions = functions
        self.target = target
        self.parameters: dict[str, Any] = {}
        self.conditions: dict[str, Any] = {}
        self.resources: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}

    def build(self) -> dict[str, Any]:
        parameters.add(self)
        table_resources.add(self)
        keys.add(self)
        sms.add(self)
        push.add(self)
        queues.add(self)
        functions.add(self)
        edge.add(self)
        alarms.add(self)
        dashboard.add(self)
        return {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Description": (
                f"Smart contact list ({self.stage.name}): "
                + (
                    "Chalice functions and REST API, "
                    if self.target == "merge"
                    else "infrastructure of `chalice deploy` (function roles, "
                )
                + "DynamoDB tables, SIP edge on ECS Fargate behind a Network Load Balancer"
                + (")." if self.target == "infra" else ".")
            ),
            "Parameters": self.parameters,
            "Conditions": self.conditions,
            "Resources": self.resources,
            "Outputs": self.outputs,
        }

    def lambda_name(self, fn: Function) -> str:
        """The deployed name, for Fn::Sub. `chalice deploy` names its functions
        "<app>-<stage>-<name>", which is "<stack>-<name>" (deploy.py names the stack so), except
        the REST handler: "<app>-<stage>" alone."""
        if self.target == "infra" and fn.kind == "api":
            return "${AWS::StackName}"
        return "${AWS::StackName}-" + fn.name

    def function_name(self, fn: Function) -> Any:
        # In the merge template the Ref orders alarms after the function.
        return ref(fn.cfn) if self.target == "merge" else sub(self.lambda_name(fn))

    def function_arn(self, fn: Function) -> Any:
        if self.target == "merge":
            return arn(fn.cfn)
        return sub(
            "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:"
            + self.lambda_name(fn)
        )

    def function_environment(self) -> dict[str, Any]:
        env: dict[str, Any] = {
            "STAGE": self.stage.name,
            "SIP_DOMAIN": ref("SipDomain"),
            "SECRETS_ARN": ref("HmacKeysSecret"),
            "TABLE_PREFIX": sub("${AWS::StackName}-"),
            "SIP_FUNCTION_PREFIX": sub("${AWS::StackName}-"),
            "EDGE_QUEUE_PREFIX": sub("${AWS::StackName}-edge-"),
        }
        for spec in tables.ALL:
            env[spec.env_var] = ref(table_id(spec))
        # The Linphone apps: provisioning's links and SIP address, the push applications.
        env["PUBLIC_URL"] = ref("PublicUrl")
        host = {
            "Fn::If": [
                "HasAdvertisedHost",
                ref("SipAdvertisedHost"),
                {"Fn::GetAtt": ["SipLoadBalancer", "DNSName"]},
            ]
        }
        env["SIP_PROXY_URI"] = {
            "Fn::If": [
                "HasTls",
                {"Fn::Sub": [f"sips:${{Host}}:{TLS_PORT};transport=tls", {"Host": host}]},
                {"Fn::Sub": [f"sip:${{Host}}:{SIP_PORT};transport=tcp", {"Host": host}]},
            ]
        }
        env.update(push.environment())
        return env

    def custom_function(self, logical: str, short: str, source: str, grants: list[Any]) -> None:
        """An inline (ZipFile) Lambda backing a custom resource, with its own role and logs."""
        code = (ROOT / "infra" / "custom" / source).read_text()
        self.resources[logical + "Role"] = role(
            trust("lambda.amazonaws.com"),
            [
                {
                    "Sid": "OwnLogs",
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                    "Resource": log_group_arn("${AWS::StackName}-" + short),
                },
                *grants,
            ],
            f"Custom resource {logical}",
        )
        self.resources[logical + "LogGroup"] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": sub("/aws/lambda/${AWS::StackName}-" + short),
                "RetentionInDays": self.stage.log_retention_days,
            },
        }
        self.resources[logical] = {
            "Type": "AWS::Lambda::Function",
            "DependsOn": [logical + "LogGroup"],
            "Properties": {
                "FunctionName": deployed_name(short),
                "Runtime": CUSTOM_RUNTIME,
                "Architectures": ["arm64"],
                "Handler": "index.handler",
                "MemorySize": 128,
                "Timeout": 30,
                "Role": arn(logical + "Role"),
                "Code": {"ZipFile": code},
            },
        }


def build(stage: str, app: Any | None = None, target: str = "merge") -> dict[str, Any]:
    """The template of one stage (`dev` or `prod`) for one target (`merge` or `infra`)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {sorted(STAGES)}")
    functions = functions_of(app if app is not None else load_app())
    return Builder(STAGES[stage], functions, target).build()
