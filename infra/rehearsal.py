"""The offline rehearsal's variant of the infra stack, for the resource types moto lacks.

moto's CloudFormation creates most types of the infra stack through the same APIs a real stack
would. A type it has no model for would be skipped with only a warning, so the rehearsal
deploys a variant of the very same template without those resources and says, per type, how
it stands in for them (`STAND_INS`). `tests/test_infra_deploy.py` checks that the variant
leaves out exactly the types moto lacks, and nothing else.
"""

from __future__ import annotations

import copy
import json
import secrets
from typing import Any

from infra.custom import keys_init, push_apps, sms_settings

SECRET = "AWS::SecretsManager::Secret"
PUSH_APPS = "Custom::PushApplications"

#: Each type of the infra stack that moto 5.2's CloudFormation lacks, and the stand-in.
STAND_INS: dict[str, str] = {
    SECRET: "created with the Secrets Manager API under the stack's name for it; its ARN is "
    "passed as a parameter with the resource's logical id, so every Ref and Sub of it "
    "resolves as in the real stack",
    "Custom::HmacKeys": "its handler's fill() (infra/custom/keys_init.py) runs in the deploying "
    "process against that secret (moto would run the inline Lambda in Docker)",
    "Custom::SmsPreferences": "its handler's attributes() (infra/custom/sms_settings.py) are "
    "applied with SNS SetSMSAttributes from the deploying process",
    PUSH_APPS: "its handler's apply() (infra/custom/push_apps.py) runs in the deploying "
    "process; each attribute it answers is passed as a parameter named <logical id><attribute>,"
    " so every GetAtt of it resolves as in the real stack",
    "AWS::CloudWatch::Alarm": "left out, nothing stands in; cfn-lint checks them and "
    "tests/test_infra.py checks what each watches",
    "AWS::SNS::Subscription": "left out: it exists only when AlarmEmail is set, and the "
    "rehearsal sets none",
}
#: Types moto models, but not as this stack uses them.
REFUSED: dict[str, str] = {
    "AWS::ElasticLoadBalancingV2::Listener": "left out, nothing stands in: moto's CloudFormation "
    "drops the load balancer's Type: network (it makes an application load balancer) and then "
    "refuses TCP_UDP and TLS listeners; cfn-lint checks them",
}
LEFT_OUT = {**STAND_INS, **REFUSED}


def _references(node: Any, logical: str, condition: str | None) -> bool:
    """Whether `node` names `logical`, outside an Fn::If on the resource's own condition."""
    if isinstance(node, dict):
        if node.get("Ref") == logical:
            return True
        getatt = node.get("Fn::GetAtt")
        if isinstance(getatt, list) and getatt[0] == logical:
            return True
        sub = node.get("Fn::Sub")
        if isinstance(sub, str) and ("${" + logical + "}" in sub or "${" + logical + "." in sub):
            return True
        branches = node.get("Fn::If")
        if isinstance(branches, list) and condition and branches[0] == condition:
            return _references(branches[2], logical, condition)
        return any(_references(v, logical, condition) for v in node.values())
    if isinstance(node, list):
        return any(_references(v, logical, condition) for v in node)
    return False


def _else_branch(node: Any, logical: str, condition: str) -> Any:
    """`Fn::If` on a left-out resource's own condition, naming it: its else branch (the
    rehearsal never meets the condition: the resource is not there to meet it)."""
    if isinstance(node, dict):
        branches = node.get("Fn::If")
        if (
            isinstance(branches, list)
            and branches[0] == condition
            and _references(branches[1], logical, None)
        ):
            return _else_branch(branches[2], logical, condition)
        return {k: _else_branch(v, logical, condition) for k, v in node.items()}
    if isinstance(node, list):
        return [_else_branch(v, logical, condition) for v in node]
    return node


def _getatt_to_parameter(node: Any, logical: str, parameters: dict[str, Any]) -> Any:
    """Each `Fn::GetAtt` of the left-out `logical` as a Ref of a parameter fed by its stand-in."""
    if isinstance(node, dict):
        getatt = node.get("Fn::GetAtt")
        if isinstance(getatt, list) and getatt[0] == logical:
            name = logical + getatt[1]
            parameters[name] = {
                "Type": "String",
                "Default": "",
                "Description": f"Rehearsal: {logical}'s {getatt[1]}, made in its place.",
            }
            return {"Ref": name}
        return {k: _getatt_to_parameter(v, logical, parameters) for k, v in node.items()}
    if isinstance(node, list):
        return [_getatt_to_parameter(v, logical, parameters) for v in node]
    return node


def variant(template: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The template without the types in LEFT_OUT, and what was left out (logical id: type)."""
    out = copy.deepcopy(template)
    left_out = {k: v["Type"] for k, v in out["Resources"].items() if v["Type"] in LEFT_OUT}
    removed = {logical: out["Resources"].pop(logical) for logical in left_out}
    for logical, resource in removed.items():
        if resource["Type"] == SECRET:
            out["Parameters"][logical] = {
                "Type": "String",
                "Description": "Rehearsal: ARN of the secret created in its place.",
            }
    for resource in out["Resources"].values():
        depends = resource.get("DependsOn")
        if depends:
            kept = [d for d in ([depends] if isinstance(depends, str) else depends)]
            kept = [d for d in kept if d not in left_out]
            if kept:
                resource["DependsOn"] = kept
            else:
                del resource["DependsOn"]
    for logical, resource in removed.items():
        if resource["Type"] == PUSH_APPS:
            for where in ("Resources", "Outputs"):
                out[where] = _getatt_to_parameter(out[where], logical, out["Parameters"])
    for logical, resource in removed.items():
        if resource["Type"] == SECRET:
            continue
        if resource.get("Condition"):
            for where in ("Resources", "Outputs"):
                out[where] = _else_branch(out[where], logical, resource["Condition"])
        for where in ("Resources", "Outputs"):
            if _references(out[where], logical, resource.get("Condition")):
                raise ValueError(f"{logical} is left out of the rehearsal but {where} use it")
    return out, left_out


def resolve(value: Any, stack: str, parameters: dict[str, str]) -> Any:
    """The few intrinsics the stand-ins' properties use: Ref of a parameter, Sub of the stack."""
    if isinstance(value, dict) and "Ref" in value:
        return parameters[value["Ref"]]
    if isinstance(value, dict) and "Fn::Sub" in value:
        return value["Fn::Sub"].replace("${AWS::StackName}", stack)
    return value


def stand_in(
    template: dict[str, Any], stack: str, parameters: dict[str, str], client: Any
) -> dict[str, str]:
    """Do what the left-out resources would have done; answers the parameters they feed."""
    fed: dict[str, str] = {}
    defaults = {k: str(p["Default"]) for k, p in template["Parameters"].items() if "Default" in p}
    params = {**defaults, **parameters}
    for logical, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] == SECRET:
            sm = client("secretsmanager")
            name = resolve(props["Name"], stack, params)
            found = sm.list_secrets(Filters=[{"Key": "name", "Values": [name]}])["SecretList"]
            found = [s for s in found if s["Name"] == name]
            if found:
                fed[logical] = found[0]["ARN"]
            else:
                generate = props["GenerateSecretString"]
                first = {generate["GenerateStringKey"]: secrets.token_urlsafe(48)}
                fed[logical] = sm.create_secret(Name=name, SecretString=json.dumps(first))["ARN"]
    for logical, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] == PUSH_APPS:
            wanted = {k: resolve(v, stack, params) for k, v in props.items()}
            made = push_apps.apply(wanted, client("sns"), client("secretsmanager"))
            fed.update({logical + key: arn for key, arn in made.items()})
        if resource["Type"] == "Custom::HmacKeys":
            keys_init.fill(fed[props["SecretId"]["Ref"]], client("secretsmanager"))
        elif resource["Type"] == "Custom::SmsPreferences":
            wanted = {k: resolve(v, stack, params) for k, v in props.items()}
            client("sns").set_sms_attributes(attributes=sms_settings.attributes(wanted))
    return fed
