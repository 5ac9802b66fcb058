"""Small CloudFormation helpers every resource family uses: intrinsics, names, IAM documents."""

from __future__ import annotations

from typing import Any

from chalicelib import tables
from infra.template.model import Stage


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
