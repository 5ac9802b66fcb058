"""Builds the CloudFormation of both deployment paths from one set of definitions.

Everything is derived: the tables from `chalicelib.tables.ALL`, the functions and stream
handlers from the Chalice app in `app.py`, each function's permissions from `infra.access`.

- target "merge": what `chalice package --merge-template` folds into Chalice's own template;
  Chalice's template supplies the functions and the REST API.
- target "infra": the stack `chalice deploy` runs against (`infra/deploy.py`); the same
  resources minus the functions, with outputs (roles, environment, streams) that the deploy
  writes into the stage's Chalice config.

Both add the tables, the keys, the queues, the SIP edge (ECS Fargate behind an NLB), one IAM
role per function, alarms and the operator's dashboard.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalice.utils import to_cfn_resource_name

from chalicelib import tables
from chalicelib.observability import SERVICE
from infra import access

ROOT = Path(__file__).resolve().parent.parent
SIP_PORT = 5060
TLS_PORT = 5061
CONTAINER = "edge"
#: Marks the HMAC keys the edge must never hold (it only needs NONCE_KEY); any use shows.
EDGE_WITHHELD_KEY = "withheld-from-the-edge"
#: The Lambda runtime of every function: supported by Lambda, chalice 1.34 and lxml/powertools
#: wheels. The edge image uses the same Python (sip_edge/Dockerfile).
LAMBDA_RUNTIME = "python3.13"
CUSTOM_RUNTIME = LAMBDA_RUNTIME


@dataclass(frozen=True)
class Stage:
    """What differs between dev and prod beyond `.chalice/config.json`."""

    name: str
    edge_max_slots: int  # queues, task definitions and services generated
    edge_default_slots: int  # of which running by default (parameter EdgeSlots)
    log_retention_days: int
    container_insights: bool
    sms_spend_limit_usd: int
    lambda_errors_threshold: int  # errors per 5 minutes that page someone


TARGETS = ("merge", "infra")
#: The dimension Powertools puts on every EMF metric.
SERVICE_DIMENSION = SERVICE
#: How a stream handler's event source mapping retries (both paths; failures go to a queue).
STREAM_EVENT_SETTINGS: dict[str, Any] = {
    "MaximumRetryAttempts": 5,
    "BisectBatchOnFunctionError": True,
    "MaximumRecordAgeInSeconds": 3600,
    # The handlers answer `batchItemFailures` when SQS refuses part of an update: retry then.
    "FunctionResponseTypes": ["ReportBatchItemFailures"],
}
#: The edge's per-request metric, with dimensions Method and Class (sip_edge/metrics.py).
EDGE_REQUESTS_METRIC = "SipRequests"
CHALICE_CONFIG = ROOT / ".chalice" / "config.json"


def chalice_config() -> dict[str, Any]:
    return json.loads(CHALICE_CONFIG.read_text())


def metrics_namespace() -> str:
    """The EMF namespace of the functions (and the edge): the Chalice config sets it."""
    return chalice_config()["environment_variables"]["POWERTOOLS_METRICS_NAMESPACE"]


def env_output_id(name: str) -> str:
    """Output id of one function environment variable (ids are alphanumeric only)."""
    return "Env" + "".join(part.capitalize() for part in name.split("_"))


STAGES: dict[str, Stage] = {
    "dev": Stage("dev", 2, 1, 14, False, 1, 1),
    "prod": Stage("prod", 8, 2, 90, True, 100, 5),
}


@dataclass(frozen=True)
class Function:
    """One Lambda function of the Chalice app, as the packaged template names it."""

    name: str  # Chalice's name: the suffix of the deployed name "<stack>-<name>"
    cfn: str  # logical id in Chalice's template
    kind: str  # "api" (REST handler), "edge" (invoked by the SIP edge) or "stream"
    streams: tuple[tuple[str, tables.TableSpec], ...] = ()  # (event logical id, table)

    @property
    def access(self) -> access.Access:
        return access.for_function(self.name, stream_handler=self.kind == "stream")


def table_of_stream(stream_arn: str) -> tables.TableSpec:
    """The table a handler's `stream_arn` names (by the table name's suffix, any prefix)."""
    match = re.search(r":table/([^/]+)/stream/", stream_arn)
    name = match.group(1) if match else stream_arn
    found = sorted(
        (s for s in tables.ALL if name.endswith(s.logical) or name == s.env_var),
        key=lambda s: -len(s.logical),
    )
    if not found or not found[0].stream:
        raise ValueError(f"stream {stream_arn!r} is not the stream of a table with streams on")
    return found[0]


def functions_of(app: Any) -> list[Function]:
    """Every Lambda function `chalice package` will emit for this app."""
    out: list[Function] = []
    if app.routes:
        out.append(Function("api_handler", "APIHandler", "api"))
    for fn in app.pure_lambda_functions:
        out.append(Function(fn.name, to_cfn_resource_name(fn.name), "edge"))
    streams: dict[str, list[tuple[str, tables.TableSpec]]] = {}
    for source in app.event_sources:
        if type(source).__name__ != "DynamoDBEventConfig":
            raise NotImplementedError(
                f"{source.name}: infra/template.py wires DynamoDB stream handlers only"
            )
        event_id = to_cfn_resource_name(source.name + "-dynamodb-event-source")
        streams.setdefault(source.name, []).append((event_id, table_of_stream(source.stream_arn)))
    for name, wired in streams.items():
        out.append(Function(name, to_cfn_resource_name(name), "stream", tuple(wired)))
    return out


def load_app() -> Any:
    return importlib.import_module("app").app


# --- small CloudFormation helpers -------------------------------------------------------------


def sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def arn(resource: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [resource, "Arn"]}


def table_id(spec: tables.TableSpec) -> str:
    return spec.logical + "Table"


def deployed_name(function: str) -> dict[str, str]:
    # Fixed names let roles name their log groups without a cycle through the function, and
    # let the edge call "<stack>-<function>" (SIP_FUNCTION_PREFIX) as the local stack does.
    return sub("${AWS::StackName}-" + function)


def log_group_arn(function: str) -> dict[str, str]:
    """The log group of the function deployed as `function` (Fn::Sub text)."""
    return sub(
        "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/lambda/"
        + function
        + ":*"
    )


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def trust(service: str, **condition: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }
    if condition:
        statement["Condition"] = condition
    return policy(statement)


def role(assume: dict[str, Any], statements: list[dict[str, Any]], doc: str) -> dict[str, Any]:
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Description": doc[:1000],
            "AssumeRolePolicyDocument": assume,
            "Policies": [{"PolicyName": "least-privilege", "PolicyDocument": policy(*statements)}],
        },
    }


def any_of(conditions: list[Any]) -> Any:
    """Fn::Or of any number of conditions (CloudFormation takes 2 to 10 per Fn::Or)."""
    while len(conditions) > 10:
        conditions = [
            chunk[0] if len(chunk) == 1 else {"Fn::Or": chunk}
            for chunk in (conditions[i : i + 10] for i in range(0, len(conditions), 10))
        ]
    return conditions[0] if len(conditions) == 1 else {"Fn::Or": conditions}


def edge_slot_ids(stage: Stage) -> list[int]:
    return list(range(1, stage.edge_max_slots + 1))


# --- the template -----------------------------------------------------------------------------


class Builder:
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
        self._parameters()
        self._tables()
        self._keys()
        self._sms()
        self._queues()
        self._functions()
        self._edge()
        self._alarms()
        self._dashboard()
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

    # Parameters an operator sets per deployment; everything else is fixed by the stage.
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

    def _parameters(self) -> None:
        st = self.stage
        p = self.parameters
        p["SipDomain"] = {"Type": "String", "Description": "Domain of the SIP accounts."}
        p["EdgeImageRepository"] = {
            "Type": "String",
            "Default": "smart-contacts-edge",
            "Description": "ECR repository (in this account and region) of the edge image.",
        }
        p["EdgeImageTag"] = {
            "Type": "String",
            "Description": "Tag of the edge image to run (an immutable tag: the git commit).",
        }
        p["EdgeCpuArchitecture"] = {
            "Type": "String",
            "Default": "ARM64",
            "AllowedValues": ["ARM64", "X86_64"],
            "Description": "Architecture the edge image was built for.",
        }
        p["EdgeCpu"] = {
            "Type": "String",
            "Default": "256",
            "AllowedValues": ["256", "512", "1024", "2048"],
        }
        p["EdgeMemory"] = {
            "Type": "String",
            "Default": "512",
            "AllowedValues": ["512", "1024", "2048", "4096"],
        }
        p["EdgeSlots"] = {
            "Type": "String",
            "Default": str(st.edge_default_slots),
            "AllowedValues": [str(n) for n in range(0, st.edge_max_slots + 1)],
            "Description": "Edge tasks running (each owns one queue and its dialogs).",
        }
        p["VpcId"] = {"Type": "AWS::EC2::VPC::Id"}
        p["NlbSubnetIds"] = {
            "Type": "List<AWS::EC2::Subnet::Id>",
            "Description": "Public subnets of the Network Load Balancer (one per AZ).",
        }
        p["EdgeSubnetIds"] = {
            "Type": "List<AWS::EC2::Subnet::Id>",
            "Description": "Subnets of the edge tasks (private with a NAT, or public).",
        }
        p["EdgeAssignPublicIp"] = {
            "Type": "String",
            "Default": "DISABLED",
            "AllowedValues": ["DISABLED", "ENABLED"],
            "Description": "ENABLED when EdgeSubnetIds are public subnets without a NAT.",
        }
        p["SipClientCidr"] = {
            "Type": "String",
            "Default": "0.0.0.0/0",
            "AllowedPattern": r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$",
            "Description": "Who may reach SIP on the load balancer.",
        }
        p["TlsCertificateArn"] = {
            "Type": "String",
            "Default": "",
            "Description": "ACM certificate for SIP over TLS on 5061; empty = no TLS listener.",
        }
        p["SipAdvertisedHost"] = {
            "Type": "String",
            "Default": "",
            "Description": "Host name the edge puts in Via/Contact; empty = the NLB's DNS name.",
        }
        p["SmsMonthlySpendLimitUsd"] = {
            "Type": "Number",
            "Default": st.sms_spend_limit_usd,
            "MinValue": 0,
            "Description": "SNS SMS MonthlySpendLimit (USD), set by a custom resource. "
            "Must not exceed the account's SMS quota (1 USD until raised by AWS support).",
        }
        p["SmsSpendAlarmUsd"] = {
            "Type": "Number",
            "Default": max(1, st.sms_spend_limit_usd * 8 // 10),
            "MinValue": 0,
            "Description": "Alarm when the month's SMS spend reaches this (USD).",
        }
        p["AlarmEmail"] = {
            "Type": "String",
            "Default": "",
            "Description": "Address subscribed to the alarm topic; empty = none.",
        }
        c = self.conditions
        c["HasTls"] = {"Fn::Not": [{"Fn::Equals": [ref("TlsCertificateArn"), ""]}]}
        c["HasAlarmEmail"] = {"Fn::Not": [{"Fn::Equals": [ref("AlarmEmail"), ""]}]}
        c["HasAdvertisedHost"] = {"Fn::Not": [{"Fn::Equals": [ref("SipAdvertisedHost"), ""]}]}
        for k in edge_slot_ids(st):
            equal = [
                {"Fn::Equals": [ref("EdgeSlots"), str(n)]} for n in range(k, st.edge_max_slots + 1)
            ]
            c[f"EdgeSlot{k}On"] = any_of(equal)

    def _tables(self) -> None:
        for spec in tables.ALL:
            self.resources[table_id(spec)] = spec.cloudformation(
                sub("${AWS::StackName}-" + spec.logical)
            )
            self.outputs[table_id(spec) + "Name"] = {"Value": ref(table_id(spec))}
            if spec.stream:
                self.outputs[table_id(spec) + "StreamArn"] = {
                    "Value": {"Fn::GetAtt": [table_id(spec), "StreamArn"]}
                }

    def _custom_function(self, logical: str, short: str, source: str, grants: list[Any]) -> None:
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

    def _keys(self) -> None:
        self.resources["HmacKeysSecret"] = {
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
        self._custom_function(
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
        self.resources["HmacKeys"] = {
            "Type": "Custom::HmacKeys",
            "Properties": {
                "ServiceToken": arn("HmacKeysFunction"),
                "SecretId": ref("HmacKeysSecret"),
            },
        }
        self.outputs["HmacKeysSecretArn"] = {"Value": ref("HmacKeysSecret")}

    def _sms(self) -> None:
        self._custom_function(
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
        self.resources["SmsPreferences"] = {
            "Type": "Custom::SmsPreferences",
            "Properties": {
                "ServiceToken": arn("SmsPreferencesFunction"),
                "MonthlySpendLimit": ref("SmsMonthlySpendLimitUsd"),
                "DefaultSMSType": "Transactional",
            },
        }

    def _queues(self) -> None:
        for k in edge_slot_ids(self.stage):
            self.resources[f"EdgeQueue{k}"] = {
                "Type": "AWS::SQS::Queue",
                "Properties": {
                    "QueueName": sub("${AWS::StackName}-edge-" + str(k)),
                    # A partial NOTIFY older than this is stale: the next full state wins.
                    "MessageRetentionPeriod": 900,
                    "ReceiveMessageWaitTimeSeconds": 20,
                    "VisibilityTimeout": 30,
                    "SqsManagedSseEnabled": True,
                },
            }
        self.resources["StreamFailuresQueue"] = {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": sub("${AWS::StackName}-stream-failures"),
                "MessageRetentionPeriod": 1209600,
                "SqsManagedSseEnabled": True,
            },
        }
        self.outputs["StreamFailuresQueueArn"] = {"Value": arn("StreamFailuresQueue")}

    def _function_statements(self, fn: Function) -> list[dict[str, Any]]:
        acc = fn.access
        statements: list[dict[str, Any]] = [
            {
                "Sid": "OwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": log_group_arn(self.lambda_name(fn)),
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
        if acc.edge_queues:
            statements.append(
                {
                    "Sid": "EdgeQueues",
                    "Effect": "Allow",
                    "Action": ["sqs:SendMessage", "sqs:GetQueueUrl"],
                    "Resource": [arn(f"EdgeQueue{k}") for k in edge_slot_ids(self.stage)],
                }
            )
        return statements

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
        return env

    def _functions(self) -> None:
        env = self.function_environment()
        for fn in self.functions:
            self.resources[fn.cfn + "Role"] = role(
                trust("lambda.amazonaws.com"),
                self._function_statements(fn),
                f"Function {fn.name}: {fn.access.doc}",
            )
            if self.target == "infra":
                self.outputs[fn.cfn + "RoleArn"] = {"Value": arn(fn.cfn + "Role")}
        if self.target == "infra":
            # Chalice creates the functions; the deploy reads their environment from here.
            for name, value in env.items():
                self.outputs[env_output_id(name)] = {"Description": name, "Value": value}
            return
        for fn in self.functions:
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
            self.resources[fn.cfn] = {"DependsOn": ["HmacKeys"], "Properties": props}
            # chalice names the API handler's log group after "ApiHandler", a resource that
            # does not exist ("APIHandler"); a fixed name also drops the Ref to the function.
            self.resources[to_cfn_resource_name(fn.name) + "LogGroup"] = {
                "Properties": {"LogGroupName": sub("/aws/lambda/${AWS::StackName}-" + fn.name)}
            }

    def edge_environment(self, k: int) -> dict[str, Any]:
        return {
            "STAGE": self.stage.name,
            "SIP_DOMAIN": ref("SipDomain"),
            "SIP_HOST": "0.0.0.0",
            "SIP_PORT": str(SIP_PORT),
            "SIP_FUNCTIONS": "lambda",
            "SIP_FUNCTION_PREFIX": sub("${AWS::StackName}-"),
            "SIP_ADVERTISED_HOST": {
                "Fn::If": [
                    "HasAdvertisedHost",
                    ref("SipAdvertisedHost"),
                    {"Fn::GetAtt": ["SipLoadBalancer", "DNSName"]},
                ]
            },
            # The slot number: its queue is EDGE_QUEUE_PREFIX + EDGE_ID, its dialogs are
            # reloaded by whichever task runs the slot next.
            "EDGE_ID": str(k),
            "EDGE_QUEUE_PREFIX": sub("${AWS::StackName}-edge-"),
            "EDGE_QUEUE_URL": ref(f"EdgeQueue{k}"),
            "AWS_REGION": ref("AWS::Region"),
            "AWS_DEFAULT_REGION": ref("AWS::Region"),
            "POWERTOOLS_SERVICE_NAME": "smart-contacts-edge",
            "PHONE_HASH_KEY": EDGE_WITHHELD_KEY,
            "CODE_HASH_KEY": EDGE_WITHHELD_KEY,
        }

    def _edge(self) -> None:
        r = self.resources
        st = self.stage
        r["EdgeCluster"] = {
            "Type": "AWS::ECS::Cluster",
            "Properties": {
                "ClusterName": sub("${AWS::StackName}-edge"),
                "ClusterSettings": [
                    {
                        "Name": "containerInsights",
                        "Value": "enabled" if st.container_insights else "disabled",
                    }
                ],
            },
        }
        r["EdgeLogGroup"] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": sub("/ecs/${AWS::StackName}/edge"),
                "RetentionInDays": st.log_retention_days,
            },
        }
        r["EdgeExecutionRole"] = role(
            trust("ecs-tasks.amazonaws.com"),
            [
                {
                    # GetAuthorizationToken has no resource type; the pull itself is scoped.
                    "Sid": "EcrLogin",
                    "Effect": "Allow",
                    "Action": ["ecr:GetAuthorizationToken"],
                    "Resource": "*",
                },
                {
                    "Sid": "PullEdgeImage",
                    "Effect": "Allow",
                    "Action": [
                        "ecr:BatchCheckLayerAvailability",
                        "ecr:GetDownloadUrlForLayer",
                        "ecr:BatchGetImage",
                    ],
                    "Resource": sub(
                        "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:"
                        "repository/${EdgeImageRepository}"
                    ),
                },
                {
                    "Sid": "EdgeLogs",
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                    "Resource": arn("EdgeLogGroup"),
                },
                {
                    # Injects NONCE_KEY into the container; the task itself cannot read it.
                    "Sid": "NonceKey",
                    "Effect": "Allow",
                    "Action": ["secretsmanager:GetSecretValue"],
                    "Resource": ref("HmacKeysSecret"),
                },
            ],
            "ECS pulls the edge image, writes its logs and injects NONCE_KEY.",
        )
        r["NlbSecurityGroup"] = {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {
                "GroupDescription": "SIP from phones to the load balancer",
                "VpcId": ref("VpcId"),
                "SecurityGroupIngress": [
                    {
                        "IpProtocol": proto,
                        "FromPort": port,
                        "ToPort": port,
                        "CidrIp": ref("SipClientCidr"),
                        "Description": f"SIP {proto.upper()} {port}",
                    }
                    for proto, port in (("udp", SIP_PORT), ("tcp", SIP_PORT), ("tcp", TLS_PORT))
                ],
            },
        }
        r["EdgeSecurityGroup"] = {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {
                "GroupDescription": "SIP edge tasks: SIP from the load balancer only",
                "VpcId": ref("VpcId"),
                "SecurityGroupIngress": [
                    {
                        "IpProtocol": proto,
                        "FromPort": SIP_PORT,
                        "ToPort": SIP_PORT,
                        "SourceSecurityGroupId": ref("NlbSecurityGroup"),
                        "Description": f"SIP {proto.upper()} (and health checks) from the NLB",
                    }
                    for proto in ("udp", "tcp")
                ],
            },
        }
        r["SipLoadBalancer"] = {
            "Type": "AWS::ElasticLoadBalancingV2::LoadBalancer",
            "Properties": {
                "Type": "network",
                "Scheme": "internet-facing",
                "Subnets": ref("NlbSubnetIds"),
                "SecurityGroups": [ref("NlbSecurityGroup")],
                "LoadBalancerAttributes": [
                    {"Key": "load_balancing.cross_zone.enabled", "Value": "true"}
                ],
            },
        }
        target_attributes = [
            {"Key": "deregistration_delay.timeout_seconds", "Value": "30"},
            # The edge must see the phone's address for rport/received (RFC 3581).
            {"Key": "preserve_client_ip.enabled", "Value": "true"},
            # No source-IP stickiness: thousands of phones share one carrier-NAT address, and a
            # phone's own flow (5-tuple) already stays on one edge.
            {"Key": "stickiness.enabled", "Value": "false"},
        ]
        health = {
            "HealthCheckProtocol": "TCP",
            "HealthCheckPort": "traffic-port",
            "HealthCheckIntervalSeconds": 10,
            "HealthyThresholdCount": 2,
            "UnhealthyThresholdCount": 2,
        }
        r["SipTargetGroup"] = {
            "Type": "AWS::ElasticLoadBalancingV2::TargetGroup",
            "Properties": {
                "Protocol": "TCP_UDP",
                "Port": SIP_PORT,
                "TargetType": "ip",
                "VpcId": ref("VpcId"),
                "TargetGroupAttributes": target_attributes,
                **health,
            },
        }
        r["SipTlsTargetGroup"] = {
            "Type": "AWS::ElasticLoadBalancingV2::TargetGroup",
            "Condition": "HasTls",
            "Properties": {
                "Protocol": "TCP",
                "Port": SIP_PORT,
                "TargetType": "ip",
                "VpcId": ref("VpcId"),
                "TargetGroupAttributes": target_attributes,
                **health,
            },
        }
        r["SipListener"] = {
            "Type": "AWS::ElasticLoadBalancingV2::Listener",
            "Properties": {
                "LoadBalancerArn": ref("SipLoadBalancer"),
                "Port": SIP_PORT,
                "Protocol": "TCP_UDP",
                "DefaultActions": [{"Type": "forward", "TargetGroupArn": ref("SipTargetGroup")}],
            },
        }
        r["SipTlsListener"] = {
            "Type": "AWS::ElasticLoadBalancingV2::Listener",
            "Condition": "HasTls",
            "Properties": {
                "LoadBalancerArn": ref("SipLoadBalancer"),
                "Port": TLS_PORT,
                "Protocol": "TLS",
                "Certificates": [{"CertificateArn": ref("TlsCertificateArn")}],
                "SslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
                "DefaultActions": [{"Type": "forward", "TargetGroupArn": ref("SipTlsTargetGroup")}],
            },
        }
        edge_functions = [fn for fn in self.functions if fn.kind == "edge"]
        previous: str | None = None
        for k in edge_slot_ids(st):
            self._edge_slot(k, edge_functions, previous)
            previous = f"EdgeService{k}"
        self.outputs["SipEndpoint"] = {"Value": {"Fn::GetAtt": ["SipLoadBalancer", "DNSName"]}}
        self.outputs["EdgeClusterName"] = {"Value": ref("EdgeCluster")}

    def _edge_slot(self, k: int, edge_functions: list[Function], previous: str | None) -> None:
        r = self.resources
        statements: list[dict[str, Any]] = [
            {
                "Sid": "OwnQueue",
                "Effect": "Allow",
                "Action": [
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes",
                    "sqs:GetQueueUrl",
                ],
                "Resource": arn(f"EdgeQueue{k}"),
            }
        ]
        if edge_functions:
            statements.insert(
                0,
                {
                    "Sid": "InvokeEdgeFunctions",
                    "Effect": "Allow",
                    "Action": ["lambda:InvokeFunction"],
                    "Resource": [self.function_arn(fn) for fn in edge_functions],
                },
            )
        r[f"EdgeTaskRole{k}"] = role(
            trust(
                "ecs-tasks.amazonaws.com",
                ArnLike={
                    "aws:SourceArn": sub(
                        "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:*"
                    )
                },
                StringEquals={"aws:SourceAccount": ref("AWS::AccountId")},
            ),
            statements,
            f"SIP edge {k}: invokes the functions and reads its own queue; no DynamoDB.",
        )
        env = self.edge_environment(k)
        r[f"EdgeTaskDefinition{k}"] = {
            "Type": "AWS::ECS::TaskDefinition",
            "Properties": {
                "Family": sub("${AWS::StackName}-edge-" + str(k)),
                "Cpu": ref("EdgeCpu"),
                "Memory": ref("EdgeMemory"),
                "NetworkMode": "awsvpc",
                "RequiresCompatibilities": ["FARGATE"],
                "RuntimePlatform": {
                    "OperatingSystemFamily": "LINUX",
                    "CpuArchitecture": ref("EdgeCpuArchitecture"),
                },
                "ExecutionRoleArn": arn("EdgeExecutionRole"),
                "TaskRoleArn": arn(f"EdgeTaskRole{k}"),
                "ContainerDefinitions": [
                    {
                        "Name": CONTAINER,
                        "Image": sub(
                            "${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/"
                            "${EdgeImageRepository}:${EdgeImageTag}"
                        ),
                        "Essential": True,
                        "PortMappings": [
                            {"ContainerPort": SIP_PORT, "Protocol": "udp"},
                            {"ContainerPort": SIP_PORT, "Protocol": "tcp"},
                        ],
                        "Environment": [{"Name": n, "Value": v} for n, v in sorted(env.items())],
                        "Secrets": [
                            {
                                "Name": "NONCE_KEY",
                                "ValueFrom": sub("${HmacKeysSecret}:NONCE_KEY::"),
                            }
                        ],
                        # Same probe as the Dockerfile's HEALTHCHECK: a SIP OPTIONS over UDP.
                        "HealthCheck": {
                            "Command": ["CMD", "python", "/app/sip_edge/healthcheck.py"],
                            "Interval": 30,
                            "Timeout": 5,
                            "Retries": 3,
                            "StartPeriod": 20,
                        },
                        "LogConfiguration": {
                            "LogDriver": "awslogs",
                            "Options": {
                                "awslogs-group": ref("EdgeLogGroup"),
                                "awslogs-region": ref("AWS::Region"),
                                "awslogs-stream-prefix": "edge",
                            },
                        },
                        "ReadonlyRootFilesystem": True,
                        "LinuxParameters": {"InitProcessEnabled": True},
                        # One fd per TCP/TLS connection (SIP_MAX_CONNECTIONS) plus headroom.
                        "Ulimits": [{"Name": "nofile", "SoftLimit": 65536, "HardLimit": 65536}],
                        "StopTimeout": 30,
                    }
                ],
            },
        }
        load_balancers: list[Any] = [
            {
                "ContainerName": CONTAINER,
                "ContainerPort": SIP_PORT,
                "TargetGroupArn": ref("SipTargetGroup"),
            },
            {
                "Fn::If": [
                    "HasTls",
                    {
                        "ContainerName": CONTAINER,
                        "ContainerPort": SIP_PORT,
                        "TargetGroupArn": ref("SipTlsTargetGroup"),
                    },
                    ref("AWS::NoValue"),
                ]
            },
        ]
        depends = ["SipListener"] + ([previous] if previous else [])
        r[f"EdgeService{k}"] = {
            "Type": "AWS::ECS::Service",
            # One service per slot: the slot's identity (EDGE_ID, queue, dialogs) survives
            # task replacement, and services update one after another (DependsOn chain).
            "DependsOn": depends,
            "Properties": {
                "ServiceName": f"edge-{k}",
                "Cluster": ref("EdgeCluster"),
                "TaskDefinition": ref(f"EdgeTaskDefinition{k}"),
                "LaunchType": "FARGATE",
                "DesiredCount": {"Fn::If": [f"EdgeSlot{k}On", 1, 0]},
                # Never two tasks with one EDGE_ID: stop the old one, then start the new one.
                "DeploymentConfiguration": {
                    "MinimumHealthyPercent": 0,
                    "MaximumPercent": 100,
                    "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
                },
                "HealthCheckGracePeriodSeconds": 60,
                "NetworkConfiguration": {
                    "AwsvpcConfiguration": {
                        "AssignPublicIp": ref("EdgeAssignPublicIp"),
                        "SecurityGroups": [ref("EdgeSecurityGroup")],
                        "Subnets": ref("EdgeSubnetIds"),
                    }
                },
                "LoadBalancers": load_balancers,
                "PropagateTags": "SERVICE",
                "EnableECSManagedTags": True,
                "Tags": [
                    {"Key": "edge-slot", "Value": str(k)},
                    # Orders the service after the TLS listener when there is one.
                    {
                        "Key": "sip-tls-listener",
                        "Value": {"Fn::If": ["HasTls", ref("SipTlsListener"), "none"]},
                    },
                ],
            },
        }

    def _alarm(self, logical: str, description: str, props: dict[str, Any]) -> None:
        self.resources[logical] = {
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

    def _alarms(self) -> None:
        r = self.resources
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
        self.outputs["AlarmTopicArn"] = {"Value": ref("AlarmTopic")}
        for fn in self.functions:
            dims = [{"Name": "FunctionName", "Value": self.function_name(fn)}]
            self._alarm(
                fn.cfn + "ErrorsAlarm",
                f"Lambda {fn.name}: errors",
                {
                    "Namespace": "AWS/Lambda",
                    "MetricName": "Errors",
                    "Dimensions": dims,
                    "Statistic": "Sum",
                    "Period": 300,
                    "Threshold": self.stage.lambda_errors_threshold,
                },
            )
            self._alarm(
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
                self._alarm(
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
            self._alarm(
                table_id(spec) + "ThrottleAlarm",
                f"DynamoDB {spec.logical}: throttled requests (hot partition or table limit)",
                {"Metrics": metrics, "Threshold": 1},
            )
        self._alarm(
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
        self._alarm(
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
        # Abuse limits (issue 11): the service's own EMF metrics (chalicelib.observability).
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
            self._alarm(
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
        for k in edge_slot_ids(self.stage):
            self._alarm(
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
        self._alarm(
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

    # --- the operator's dashboard ----------------------------------------------------------

    def _dashboard(self) -> None:
        """One page of the service: the edge, the functions, the tables, the streams, SMS."""
        ns = metrics_namespace()
        emf = ["service", SERVICE_DIMENSION]  # Powertools adds this dimension to every metric
        fns = self.functions
        stream_fns = [fn for fn in fns if fn.streams]
        slots = edge_slot_ids(self.stage)
        name = "${AWS::StackName}-"

        def per_function(metric: str, stat: str, which: list[Function]) -> list[list[Any]]:
            return [
                ["AWS/Lambda", metric, "FunctionName", self.lambda_name(fn), {"stat": stat}]
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
        self.resources["Dashboard"] = {
            "Type": "AWS::CloudWatch::Dashboard",
            "Properties": {
                "DashboardName": sub("${AWS::StackName}"),
                "DashboardBody": sub(json.dumps(body, separators=(",", ":"))),
            },
        }
        self.outputs["DashboardName"] = {"Value": ref("Dashboard")}


def build(stage: str, app: Any | None = None, target: str = "merge") -> dict[str, Any]:
    """The template of one stage (`dev` or `prod`) for one target (`merge` or `infra`)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {sorted(STAGES)}")
    functions = functions_of(app if app is not None else load_app())
    return Builder(STAGES[stage], functions, target).build()
