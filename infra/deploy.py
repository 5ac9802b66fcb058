"""`make deploy` and `make teardown`: the infra stack by CloudFormation, then `chalice deploy`.

    python -m infra.deploy up   --stage dev [--bucket B] [Key=Value ...] [--workdir DIR]
    python -m infra.deploy down --stage dev [--purge-data] [--workdir DIR]

`up` builds the infra template (`infra.template`, target "infra"), creates or updates the stack
`<app>-<stage>` (so `${AWS::StackName}-<function>` is the name `chalice deploy` gives each
function), writes the stage's Chalice config into the work directory from the stack's outputs
(each function's role, the environment) and runs `chalice deploy` there with the stream ARNs
from the outputs; then it sets the stream retries and failure queue on the event source
mappings, which Chalice cannot express. Nothing changed = nothing updated.

With `AWS_ENDPOINT_URL` set it is the offline rehearsal (moto): the resource types moto lacks
are stood in for as `infra.rehearsal` says, and the required parameters default to the moto
account's default VPC. Chalice's record of what it deployed lives in the work directory:
`.deploy/<stage>` for AWS, `build/rehearsal/<stage>` for a rehearsal.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from infra import rehearsal, template

ROOT = template.ROOT
#: The largest template CloudFormation takes inline; larger ones go through S3.
TEMPLATE_BODY_MAX = 51_200
#: Linked into the work directory: what `chalice deploy` packages. The dependency cache
#: (`.chalice/deployments`, keyed on requirements.txt) is shared with `make package`.
PROJECT_FILES = ("app.py", "chalicelib", "requirements.txt")
REHEARSAL_PARAMETERS = {"SipDomain": "sip.example.org", "EdgeImageTag": "rehearsal"}
#: Variables of the deploying process that must not reach app.py's import (the deploy is
#: not a deployed stage, and needs no keys).
HIDDEN_FROM_CHALICE = ("STAGE", "SECRETS_ARN")


def rehearsing() -> bool:
    return bool(os.environ.get("AWS_ENDPOINT_URL"))


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-west-1"


@functools.cache
def client(service: str) -> Any:
    return boto3.session.Session().client(service, region_name=region())


def stack_name(stage: str) -> str:
    # chalice deploy names functions "<app_name>-<stage>-<function>"; the roles, alarms, the
    # dashboard and the edge name them "<stack>-<function>": one name for both.
    return f"{template.chalice_config()['app_name']}-{stage}"


def default_workdir(stage: str) -> Path:
    return ROOT / ("build/rehearsal" if rehearsing() else ".deploy") / stage


def say(text: str) -> None:
    print(text, flush=True)


# --- the infra stack --------------------------------------------------------------------------


def infra_template(stage: str) -> dict[str, Any]:
    built = template.build(stage, target="infra")
    if rehearsing():
        built, left_out = rehearsal.variant(built)
        for kind in sorted(set(left_out.values())):
            count = sum(1 for k in left_out.values() if k == kind)
            say(f"rehearsal: {count} x {kind}: {rehearsal.LEFT_OUT[kind]}")
    return built


def rehearsal_parameters(given: dict[str, str]) -> dict[str, str]:
    ec2 = client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])
    ids = ",".join(sorted(s["SubnetId"] for s in subnets["Subnets"])[:2])
    defaults = {
        **REHEARSAL_PARAMETERS,
        "VpcId": vpc["VpcId"],
        "NlbSubnetIds": ids,
        "EdgeSubnetIds": ids,
    }
    return {**defaults, **given}


def current_stack(cfn: Any, stack: str) -> dict[str, Any] | None:
    try:
        found = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return None if found["StackStatus"] == "DELETE_COMPLETE" else found


def template_location(body: str, stack: str, bucket: str | None) -> dict[str, str]:
    if not bucket and len(body) <= TEMPLATE_BODY_MAX:
        return {"TemplateBody": body}
    if not bucket:
        if not rehearsing():
            raise SystemExit(
                f"the infra template is {len(body):,} bytes, over CloudFormation's inline "
                f"limit of {TEMPLATE_BODY_MAX:,}: give an S3 bucket (BUCKET=... / --bucket)"
            )
        bucket = f"{stack}-rehearsal-artefacts"
        try:
            client("s3").create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region()}
            )
        except ClientError as exc:
            if "BucketAlreadyOwnedByYou" not in str(exc):
                raise
    key = f"{stack}/infra-{hashlib.sha256(body.encode()).hexdigest()[:16]}.json"
    client("s3").put_object(Bucket=bucket, Key=key, Body=body.encode())
    return {"TemplateURL": f"https://{bucket}.s3.{region()}.amazonaws.com/{key}"}


def same_values(wanted: dict[str, str], deployed: dict[str, str]) -> bool:
    def norm(value: str) -> list[str]:
        # moto answers a list parameter as Python's repr of the list, AWS as "a,b".
        if value.startswith("["):
            value = ",".join(ast.literal_eval(value))
        return sorted(value.split(","))

    return wanted.keys() == deployed.keys() and all(
        norm(wanted[k]) == norm(deployed[k]) for k in wanted
    )


def failure_reasons(cfn: Any, stack: str) -> str:
    events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
    failed = [e for e in events if e["ResourceStatus"].endswith("FAILED")]
    return "\n".join(
        f"  {e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}" for e in failed[:10]
    )


def deploy_stack(
    stage: str, given: dict[str, str], bucket: str | None
) -> tuple[dict[str, str], bool]:
    """Create or update the infra stack; answers its outputs and whether anything changed."""
    cfn = client("cloudformation")
    stack = stack_name(stage)
    full = template.build(stage, target="infra")
    built = infra_template(stage)
    current = current_stack(cfn, stack)
    if current is not None and current["StackStatus"] in ("ROLLBACK_COMPLETE", "CREATE_FAILED"):
        raise SystemExit(
            f"stack {stack} is {current['StackStatus']} (its creation failed): "
            f"`make teardown STAGE={stage}`, then deploy again\n{failure_reasons(cfn, stack)}"
        )
    if rehearsing():
        given = rehearsal_parameters(given)
        given = {**given, **rehearsal.stand_in(full, stack, given, client)}
    declared = built["Parameters"]
    unknown = set(given) - set(declared)
    if unknown:
        raise SystemExit(
            f"unknown parameters {sorted(unknown)}; the template takes {sorted(declared)}"
        )
    previous = {
        p["ParameterKey"]: p.get("ParameterValue", "")
        for p in (current or {}).get("Parameters", [])
    }
    missing = [
        k
        for k, p in declared.items()
        if "Default" not in p and k not in given and k not in previous
    ]
    if missing:
        raise SystemExit(f"stack {stack}: give the parameters {', '.join(missing)} (Key=Value)")
    # Not given: keep the deployed value, unless it is the default anyway (then say nothing:
    # moto cannot "use the previous value" of a parameter that was left to its default).
    kept = {
        k
        for k, v in previous.items()
        if k not in given and k in declared and str(declared[k].get("Default")) != v
    }
    parameters = [{"ParameterKey": k, "ParameterValue": v} for k, v in given.items()] + [
        {"ParameterKey": k, "UsePreviousValue": True} for k in sorted(kept)
    ]
    body = json.dumps(built, separators=(",", ":"))
    args: dict[str, Any] = {
        "StackName": stack,
        "Parameters": parameters,
        "Capabilities": ["CAPABILITY_IAM"],
        "Tags": [{"Key": "smart-contacts:stage", "Value": stage}],
    }
    changed = True
    if current is None:
        say(f"infra stack {stack}: creating ({len(built['Resources'])} resources)")
        cfn.create_stack(**args, **template_location(body, stack, bucket))
        waiter = "stack_create_complete"
    else:
        deployed = cfn.get_template(StackName=stack)["TemplateBody"]
        if isinstance(deployed, str):
            deployed = json.loads(deployed)
        wanted = {**previous, **given}
        if deployed == json.loads(body) and same_values(wanted, previous):
            say(f"infra stack {stack}: no change")
            changed = False
        else:
            say(f"infra stack {stack}: updating")
            try:
                cfn.update_stack(**args, **template_location(body, stack, bucket))
            except ClientError as exc:
                if "No updates are to be performed" not in str(exc):
                    raise
                say(f"infra stack {stack}: no change")
                changed = False
        waiter = "stack_update_complete"
    if changed:
        try:
            cfn.get_waiter(waiter).wait(
                StackName=stack, WaiterConfig={"Delay": 5, "MaxAttempts": 720}
            )
        except Exception as exc:
            raise SystemExit(
                f"infra stack {stack} failed: {exc}\n{failure_reasons(cfn, stack)}"
            ) from None
    outputs = cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    return {o["OutputKey"]: o["OutputValue"] for o in outputs}, changed


# --- chalice deploy ---------------------------------------------------------------------------


def function_environment(outputs: dict[str, str], stage: str) -> dict[str, str]:
    """The functions' environment, exactly as the merge template sets it, from the outputs."""
    names = template.Builder(template.STAGES[stage], []).function_environment()
    return {name: outputs[template.env_output_id(name)] for name in names}


def stream_environment(outputs: dict[str, str]) -> dict[str, str]:
    """`<TABLE>_STREAM_ARN`: what app.py's stream handlers subscribe to (live_updates)."""
    from chalicelib import tables

    return {
        f"{spec.env_var}_STREAM_ARN": outputs[template.table_id(spec) + "StreamArn"]
        for spec in tables.ALL
        if spec.stream
    }


def stage_config(stage: str, outputs: dict[str, str]) -> dict[str, Any]:
    """The Chalice config with the stage's roles and environment filled from the outputs."""
    config = template.chalice_config()
    functions = template.functions_of(template.load_app())
    stage_cfg = config["stages"][stage]
    stage_cfg["environment_variables"] = {
        **stage_cfg.get("environment_variables", {}),
        **function_environment(outputs, stage),
    }
    per_function = stage_cfg.setdefault("lambda_functions", {})
    for fn in functions:
        per_function.setdefault(fn.name, {})["iam_role_arn"] = outputs[fn.cfn + "RoleArn"]
    return config


def prepare_workdir(workdir: Path, config: dict[str, Any]) -> None:
    (workdir / ".chalice").mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        link = workdir / name
        if not link.is_symlink():
            link.symlink_to(ROOT / name)
    cache = ROOT / ".chalice" / "deployments"
    cache.mkdir(exist_ok=True)
    if not (workdir / ".chalice" / "deployments").is_symlink():
        (workdir / ".chalice" / "deployments").symlink_to(cache)
    text = json.dumps(config, indent=2) + "\n"
    target = workdir / ".chalice" / "config.json"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)


def chalice(workdir: Path, *args: str, env: dict[str, str] | None = None) -> None:
    environ = {k: v for k, v in os.environ.items() if k not in HIDDEN_FROM_CHALICE}
    environ.update(env or {})
    environ.setdefault("AWS_DEFAULT_REGION", region())
    environ["PYTHONPATH"] = str(ROOT)  # infra.chalice_pinned; app.py comes from the workdir
    subprocess.run(
        [sys.executable, "-m", "infra.chalice_pinned", "--project-dir", str(workdir), *args],
        check=True,
        cwd=workdir,
        env=environ,
    )


def deployed_record(workdir: Path, stage: str) -> dict[str, Any]:
    path = workdir / ".chalice" / "deployed" / f"{stage}.json"
    if not path.exists():
        return {}
    return {r["name"]: r for r in json.loads(path.read_text())["resources"]}


def tune_stream_mappings(stage: str, outputs: dict[str, str]) -> int:
    """Retries, bisection and the failures queue on each stream mapping (Chalice sets none)."""
    lam = client("lambda")
    wanted = {
        **template.STREAM_EVENT_SETTINGS,
        "DestinationConfig": {"OnFailure": {"Destination": outputs["StreamFailuresQueueArn"]}},
    }
    streams = set(stream_environment(outputs).values())
    mappings = [
        m
        for page in lam.get_paginator("list_event_source_mappings").paginate()
        for m in page["EventSourceMappings"]
    ]
    updated = 0
    for fn in template.functions_of(template.load_app()):
        if not fn.streams:
            continue
        suffix = f":function:{stack_name(stage)}-{fn.name}"
        for mapping in mappings:
            if not mapping["FunctionArn"].endswith(suffix):
                continue
            if mapping["EventSourceArn"] not in streams:
                continue
            if all(mapping.get(k) == v for k, v in wanted.items()):
                continue
            lam.update_event_source_mapping(UUID=mapping["UUID"], **wanted)
            updated += 1
    return updated


def up(stage: str, given: dict[str, str], bucket: str | None, workdir: Path) -> int:
    started = time.monotonic()
    if rehearsing():
        say(f"rehearsal against {os.environ['AWS_ENDPOINT_URL']} (work directory {workdir})")
    outputs, _ = deploy_stack(stage, given, bucket)
    prepare_workdir(workdir, stage_config(stage, outputs))
    chalice(workdir, "deploy", "--stage", stage, env=stream_environment(outputs))
    tuned = tune_stream_mappings(stage, outputs)
    say(f"stream mappings: {tuned} updated (retries, bisection, failures queue)")
    record = deployed_record(workdir, stage)
    api = record.get("rest_api", {}).get("rest_api_url", "(none)")
    say(f"REST API: {api}")
    say(f"SIP: {outputs.get('SipEndpoint', '?')}  dashboard: {outputs.get('DashboardName', '?')}")
    say(f"deployed {stack_name(stage)} in {time.monotonic() - started:.1f} s")
    return 0


def down(stage: str, workdir: Path, purge_data: bool) -> int:
    cfn = client("cloudformation")
    stack = stack_name(stage)
    if deployed_record(workdir, stage):
        chalice(workdir, "delete", "--stage", stage)
    else:
        say(f"chalice: nothing recorded in {workdir} for stage {stage}")
    current = current_stack(cfn, stack)
    retained: dict[str, str] = {}
    if current is not None:
        outputs = {o["OutputKey"]: o["OutputValue"] for o in current.get("Outputs", [])}
        retained = {
            k: v for k, v in outputs.items() if k.endswith("TableName") or k == "HmacKeysSecretArn"
        }
        say(f"infra stack {stack}: deleting")
        cfn.delete_stack(StackName=stack)
        cfn.get_waiter("stack_delete_complete").wait(
            StackName=stack, WaiterConfig={"Delay": 5, "MaxAttempts": 720}
        )
    if purge_data:
        ddb, sm = client("dynamodb"), client("secretsmanager")
        for key, value in sorted(retained.items()):
            try:
                if key == "HmacKeysSecretArn":
                    sm.delete_secret(SecretId=value, RecoveryWindowInDays=7)
                else:
                    ddb.delete_table(TableName=value)
                say(f"purged {value}")
            except ClientError as exc:
                if "ResourceNotFound" not in str(exc):
                    raise
    elif retained:
        say("retained (DeletionPolicy Retain): " + ", ".join(sorted(retained.values())))
        say("delete them with --purge-data (the secret is recoverable for 7 days)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--stage", required=True, choices=sorted(template.STAGES))
    parser.add_argument("--bucket", help="S3 bucket for the template (it is over 51,200 bytes)")
    parser.add_argument("--workdir", type=Path, help="where Chalice's config and record live")
    parser.add_argument("--purge-data", action="store_true", help="down: delete retained data")
    parser.add_argument("parameters", nargs="*", metavar="Key=Value", help="stack parameters")
    args = parser.parse_args(argv)
    for name in HIDDEN_FROM_CHALICE:  # `make deploy STAGE=dev` exports STAGE to this process
        os.environ.pop(name, None)
    given = dict(p.split("=", 1) for p in args.parameters)
    workdir = (args.workdir or default_workdir(args.stage)).resolve()
    if args.action == "up":
        return up(args.stage, given, args.bucket, workdir)
    return down(args.stage, workdir, args.purge_data)


if __name__ == "__main__":
    sys.exit(main())
