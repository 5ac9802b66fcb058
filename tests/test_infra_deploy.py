"""The `chalice deploy` path, rehearsed end to end: `make deploy STAGE=dev` against a moto
server, then again (nothing changes), then `make teardown`.

moto stands in for AWS; what moto's CloudFormation lacks is named in `infra.rehearsal`, and the
first test here checks that the rehearsal leaves out exactly that.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib import tables
from infra import deploy, rehearsal, template
from testkit.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
STAGE = "dev"
STACK = "smart-contacts-dev"


# --- the rehearsal's variant ------------------------------------------------------------------


def test_rehearsal_leaves_out_exactly_what_moto_lacks_or_refuses():
    from moto.cloudformation.parsing import get_model_map

    modelled = set(get_model_map())
    for stage in template.STAGES:
        full = template.build(stage, target="infra")
        variant, left_out = rehearsal.variant(full)
        kinds = {r["Type"] for r in full["Resources"].values()}
        lacking = {k for k in kinds if k not in modelled and not k.startswith("Custom::")}
        lacking |= {k for k in kinds if k.startswith("Custom::")}  # moto runs them in Docker
        assert set(left_out.values()) == lacking | (kinds & set(rehearsal.REFUSED))
        assert set(rehearsal.STAND_INS) >= lacking, "a type moto lacks has no stand-in"
        assert all(kind in modelled for kind in rehearsal.REFUSED)
        # Everything else is deployed as the real stack has it, bar DependsOn on what is gone.
        for logical, resource in variant["Resources"].items():
            original = full["Resources"][logical]
            assert resource["Type"] == original["Type"]
            assert set(resource.get("DependsOn", [])) <= set(original.get("DependsOn", []))
        assert set(variant["Resources"]) | set(left_out) == set(full["Resources"])
        assert variant["Parameters"]["HmacKeysSecret"]["Type"] == "String"


def test_infra_outputs_feed_every_function(functions_by_name):
    for stage in template.STAGES:
        t = template.build(stage, target="infra")
        merge = template.build(stage)
        # chalice deploy creates the functions: the stack has their roles only.
        assert not set(t["Resources"]) & {fn.cfn for fn in functions_by_name.values()}
        for fn in functions_by_name.values():
            assert t["Outputs"][fn.cfn + "RoleArn"]["Value"] == {
                "Fn::GetAtt": [fn.cfn + "Role", "Arn"]
            }
        env = template.Builder(template.STAGES[stage], []).function_environment()
        for name, value in env.items():
            assert t["Outputs"][template.env_output_id(name)] == {
                "Description": name,
                "Value": value,
            }
        api = next(fn for fn in functions_by_name.values() if fn.kind == "api")
        assert merge["Resources"][api.cfn]["Properties"]["FunctionName"] == {
            "Fn::Sub": "${AWS::StackName}-api_handler"
        }
        logs = t["Resources"][api.cfn + "Role"]["Properties"]["Policies"][0]
        own = next(s for s in logs["PolicyDocument"]["Statement"] if s["Sid"] == "OwnLogs")
        # chalice deploy names the REST handler "<app>-<stage>": the stack's own name.
        assert own["Resource"]["Fn::Sub"].endswith("/aws/lambda/${AWS::StackName}:*")


@pytest.fixture(scope="module")
def functions_by_name() -> dict[str, template.Function]:
    return {fn.name: fn for fn in template.functions_of(template.load_app())}


# --- the rehearsal, end to end ----------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def make(target: str, url: str, workdir: Path, *extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    env["AWS_ENDPOINT_URL"] = url
    run = subprocess.run(
        ["make", "-s", target, f"STAGE={STAGE}", f"DEPLOY_DIR={workdir}", *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return run.stdout


def aws(url: str, service: str) -> Any:
    return boto3.session.Session().client(service, endpoint_url=url, region_name="eu-west-1")


def snapshot(url: str) -> dict[str, Any]:
    """What a redeploy could change: functions, code, roles, environment, API, mappings, stack."""
    lam, gw, cfn = aws(url, "lambda"), aws(url, "apigateway"), aws(url, "cloudformation")
    functions = {
        f["FunctionName"]: {
            k: f.get(k)
            for k in ("FunctionArn", "Role", "CodeSha256", "Runtime", "Handler", "Environment",
                      "MemorySize", "Timeout", "Architectures")
        }
        for f in lam.list_functions()["Functions"]
    }  # fmt: skip
    apis = {
        a["id"]: sorted(
            (r["path"], sorted(r.get("resourceMethods", {})))
            for r in gw.get_resources(restApiId=a["id"], limit=500)["items"]
        )
        for a in gw.get_rest_apis()["items"]
    }
    mappings = sorted(
        json.dumps({k: v for k, v in m.items() if k not in ("LastModified", "State")}, default=str)
        for m in lam.list_event_source_mappings()["EventSourceMappings"]
    )
    stack = cfn.describe_stacks(StackName=STACK)["Stacks"][0]
    return {
        "functions": functions,
        "apis": apis,
        "mappings": mappings,
        "stack": (stack["StackStatus"], stack.get("LastUpdatedTime")),
    }


@pytest.fixture(scope="module")
def deployed(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("deploy")
    first = make("deploy", moto_url, workdir)
    before = snapshot(moto_url)
    second = make("deploy", moto_url, workdir)
    after = snapshot(moto_url)
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in aws(moto_url, "cloudformation").describe_stacks(StackName=STACK)["Stacks"][0][
            "Outputs"
        ]
    }
    return {
        "url": moto_url,
        "workdir": workdir,
        "first": first,
        "second": second,
        "before": before,
        "after": after,
        "outputs": outputs,
    }


@pytest.mark.slow
def test_every_function_has_its_role_and_environment(deployed, functions_by_name):
    url, outputs = deployed["url"], deployed["outputs"]
    lam, iam = aws(url, "lambda"), aws(url, "iam")
    functions = deployed["before"]["functions"]
    expected_names = {
        (STACK if fn.kind == "api" else f"{STACK}-{fn.name}"): fn
        for fn in functions_by_name.values()
    }
    # Plus the stack's own inline functions behind its custom resources.
    custom = {
        f"{STACK}-infra-hmac-keys",
        f"{STACK}-infra-sms-preferences",
        f"{STACK}-infra-push-applications",
    }
    assert set(functions) == set(expected_names) | custom
    table_names = set(aws(url, "dynamodb").list_tables()["TableNames"])
    secret = outputs["HmacKeysSecretArn"]
    for name, fn in expected_names.items():
        config = functions[name]
        assert config["Role"] == outputs[fn.cfn + "RoleArn"]
        role = iam.get_role(RoleName=config["Role"].rsplit("/", 1)[1])["Role"]
        trusted = role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"]
        assert trusted == "lambda.amazonaws.com"
        assert config["Runtime"] == template.LAMBDA_RUNTIME
        assert config["Architectures"] == ["arm64"]
        env = config["Environment"]["Variables"]
        assert env["STAGE"] == STAGE and env["SECRETS_ARN"] == secret
        assert env["SIP_FUNCTION_PREFIX"] == f"{STACK}-"
        assert env["EDGE_QUEUE_PREFIX"] == f"{STACK}-edge-"
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == template.metrics_namespace()
        for spec in tables.ALL:
            assert env[spec.env_var] == f"{STACK}-{spec.logical}"
            assert env[spec.env_var] in table_names
    keys = json.loads(aws(url, "secretsmanager").get_secret_value(SecretId=secret)["SecretString"])
    assert set(keys) == {"PHONE_HASH_KEY", "CODE_HASH_KEY", "NONCE_KEY"}
    assert lam.get_function(FunctionName=f"{STACK}-sip_auth")["Configuration"]["Timeout"] == 5


@pytest.mark.slow
def test_rest_api_serves_every_route(deployed):
    app = template.load_app()
    apis = deployed["before"]["apis"]
    assert len(apis) == 1
    (resources,) = apis.values()
    served = {path: set(methods) for path, methods in resources}
    for path, entries in app.routes.items():
        assert set(entries) <= served[path], path


@pytest.mark.slow
def test_stream_handlers_listen_to_their_tables_with_retries(deployed, functions_by_name):
    url, outputs = deployed["url"], deployed["outputs"]
    ddb, lam = aws(url, "dynamodb"), aws(url, "lambda")
    mappings = lam.list_event_source_mappings()["EventSourceMappings"]
    handlers = [fn for fn in functions_by_name.values() if fn.streams]
    assert len(mappings) == sum(len(fn.streams) for fn in handlers)
    for fn in handlers:
        arn = lam.get_function(FunctionName=f"{STACK}-{fn.name}")["Configuration"]["FunctionArn"]
        mine = [m for m in mappings if m["FunctionArn"] == arn]
        streams = {
            ddb.describe_table(TableName=f"{STACK}-{spec.logical}")["Table"]["LatestStreamArn"]
            for _, spec in fn.streams
        }
        assert {m["EventSourceArn"] for m in mine} == streams
        for m in mine:
            assert (
                m["MaximumRetryAttempts"] == template.STREAM_EVENT_SETTINGS["MaximumRetryAttempts"]
            )
            assert m["BisectBatchOnFunctionError"] is True
            # batchItemFailures from the handler are honoured, not ignored.
            assert m["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
            destination = m["DestinationConfig"]["OnFailure"]["Destination"]
            assert destination == outputs["StreamFailuresQueueArn"]


@pytest.mark.slow
def test_infra_stack_holds_the_edge_queues_and_dashboard(deployed):
    url = deployed["url"]
    assert deployed["before"]["stack"][0] == "CREATE_COMPLETE"
    queues = aws(url, "sqs").list_queues(QueueNamePrefix=STACK)["QueueUrls"]
    slots = template.STAGES[STAGE].edge_max_slots
    assert {q.rsplit("/", 1)[1] for q in queues} == {
        *(f"{STACK}-edge-{k}" for k in range(1, slots + 1)),
        f"{STACK}-stream-failures",
    }
    services = aws(url, "ecs").list_services(cluster=f"{STACK}-edge")["serviceArns"]
    assert len(services) == slots
    body = aws(url, "cloudwatch").get_dashboard(DashboardName=STACK)["DashboardBody"]
    assert "${" not in body and f'"{STACK}-Accounts"' in body
    assert len(json.loads(body)["widgets"]) >= 15


@pytest.mark.slow
def test_second_deploy_changes_nothing(deployed):
    assert "infra stack smart-contacts-dev: creating" in deployed["first"]
    assert "infra stack smart-contacts-dev: no change" in deployed["second"]
    assert "stream mappings: 0 updated" in deployed["second"]
    assert deployed["after"] == deployed["before"]


@pytest.mark.slow
def test_teardown_removes_functions_api_mappings_and_stack(deployed):
    url = deployed["url"]
    out = make("teardown", url, deployed["workdir"], "PURGE=1")
    assert "purged smart-contacts-dev-Accounts" in out
    assert aws(url, "lambda").list_functions()["Functions"] == []
    assert aws(url, "lambda").list_event_source_mappings()["EventSourceMappings"] == []
    assert aws(url, "apigateway").get_rest_apis()["items"] == []
    assert deploy.current_stack(aws(url, "cloudformation"), STACK) is None
    # moto's backend is shared by every in-process server of this pytest run: other tests'
    # tables may be there; none of the stage's may.
    tables_left = aws(url, "dynamodb").list_tables()["TableNames"]
    assert [t for t in tables_left if t.startswith("smart-contacts-dev-")] == []
