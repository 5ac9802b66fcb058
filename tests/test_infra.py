"""The deployment, checked offline: `make package`'s template lints clean and grants what it must.

The packaged templates are built once per session (both stages) with the same command as
`make package`; the function list is derived from app.py, so new functions are checked too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chalicelib import settings, tables
from infra import access, build, template
from infra.custom import keys_init, push_apps, sms_settings

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("dev", "prod")
STREAM_TABLES = {"Accounts", "PhoneIndex", "Registrations", "Publications"}


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("package")
    run = subprocess.run(
        [sys.executable, "-m", "infra.build", "--out", str(out), "--no-lint"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return {stage: out / stage / "sam.json" for stage in STAGES}


@pytest.fixture(scope="session")
def templates(packaged: dict[str, Path]) -> dict[str, dict[str, Any]]:
    return {stage: json.loads(path.read_text()) for stage, path in packaged.items()}


@pytest.fixture(scope="session")
def functions() -> list[template.Function]:
    return template.functions_of(template.load_app())


@pytest.fixture(scope="session")
def iam_actions() -> dict[str, Any]:
    """cfn-lint's copy of the IAM service reference: which actions take which resources."""
    import cfnlint

    path = Path(cfnlint.__file__).parent / "data" / "AdditionalSpecs" / "Policies.json"
    return json.loads(path.read_text())


def resources_of(t: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v for k, v in t["Resources"].items() if v["Type"] == kind}


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in role["Properties"].get("Policies", []):
        out.extend(p["PolicyDocument"]["Statement"])
    assert not role["Properties"].get("ManagedPolicyArns"), "managed policies are too broad"
    return out


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def table_refs(resource: Any) -> set[str]:
    """Logical ids of the tables an IAM Resource entry names (Arn, index ARN, stream)."""
    text = json.dumps(resource)
    return {spec.logical for spec in tables.ALL if f'"{template.table_id(spec)}' in text}


# --- the package and cfn-lint -----------------------------------------------------------------


def test_package_outputs_template_and_zip(packaged):
    for sam in packaged.values():
        assert sam.stat().st_size > 10_000
        assert (sam.parent / "deployment.zip").stat().st_size > 1_000_000


def test_package_carries_the_web_pages_and_their_libraries(packaged):
    import zipfile

    from chalicelib.web import render

    for sam in packaged.values():
        names = set(zipfile.ZipFile(sam.parent / "deployment.zip").namelist())
        web = ROOT / "chalicelib" / "web"
        for path in [*render.TEMPLATES.glob("*.html"), *render.STATIC.iterdir()]:
            assert str(path.relative_to(ROOT)) in names, path
        assert str((web / "pages.py").relative_to(ROOT)) in names
        assert {"jinja2/__init__.py", "markupsafe/__init__.py"} <= names


def test_cfn_lint_reports_no_errors(packaged):
    # Both paths: the packaged merge templates, the infra stacks and the rehearsal variants.
    others = [
        sam.parent.parent / f"{stage}-{kind}.json"
        for stage, sam in packaged.items()
        for kind in ("infra", "rehearsal")
    ]
    assert all(path.exists() for path in others)
    lint = build.cfn_lint([*packaged.values(), *others])
    # Bit 2 = errors, bit 1 = cfn-lint itself failed; warnings (4) and infos (8) are reported.
    assert not lint.returncode & 3, lint.stdout + lint.stderr


def test_functions_in_template_are_those_of_app(templates, functions):
    for t in templates.values():
        deployed = resources_of(t, "AWS::Serverless::Function")
        assert set(deployed) == {fn.cfn for fn in functions}
        for fn in functions:
            props = deployed[fn.cfn]["Properties"]
            assert props["Runtime"] == template.LAMBDA_RUNTIME
            assert props["FunctionName"] == {"Fn::Sub": "${AWS::StackName}-" + fn.name}
            assert props["Role"] == {"Fn::GetAtt": [fn.cfn + "Role", "Arn"]}
            assert props["Architectures"] == ["arm64"]
        for inline in resources_of(t, "AWS::Lambda::Function").values():
            assert inline["Properties"]["Runtime"] == template.LAMBDA_RUNTIME


def test_every_declared_function_has_an_access_entry(functions):
    assert {"api_handler", "sip_auth", "sip_registrar"} <= {fn.name for fn in functions}
    for fn in functions:
        assert fn.access.tables or fn.kind == "api"
    with pytest.raises(access.UndeclaredFunction):
        access.for_function("not_declared_anywhere", stream_handler=False)


# --- tables, keys, SMS ------------------------------------------------------------------------


def test_tables_come_from_the_single_definition(templates):
    for t in templates.values():
        assert set(resources_of(t, "AWS::DynamoDB::Table")) == {
            template.table_id(s) for s in tables.ALL
        }
        for spec in tables.ALL:
            res = t["Resources"][template.table_id(spec)]
            assert res == spec.cloudformation({"Fn::Sub": "${AWS::StackName}-" + spec.logical})
            props = res["Properties"]
            assert props["BillingMode"] == "PAY_PER_REQUEST"
            assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]
            assert props["SSESpecification"]["SSEEnabled"]
            assert ("StreamSpecification" in props) == spec.stream
            if spec.ttl_attribute:
                assert props["TimeToLiveSpecification"]["AttributeName"] == spec.ttl_attribute


def test_hmac_keys_secret_is_generated_and_retained(templates):
    for t in templates.values():
        secret = t["Resources"]["HmacKeysSecret"]
        assert secret["DeletionPolicy"] == "Retain"
        assert "GenerateSecretString" in secret["Properties"]
        assert "SecretString" not in secret["Properties"]
        assert t["Resources"]["HmacKeys"]["Properties"]["SecretId"] == {"Ref": "HmacKeysSecret"}


def test_keys_custom_resource_fills_missing_keys_and_never_replaces(aws):
    from chalicelib.aws import client

    sm = client("secretsmanager")
    arn = sm.create_secret(Name="k", SecretString=json.dumps({"PHONE_HASH_KEY": "kept"}))["ARN"]
    assert keys_init.fill(arn, sm) == ["CODE_HASH_KEY", "NONCE_KEY"]
    first = json.loads(sm.get_secret_value(SecretId=arn)["SecretString"])
    assert first["PHONE_HASH_KEY"] == "kept" and len(first["NONCE_KEY"]) >= 48
    assert keys_init.fill(arn, sm) == []
    assert json.loads(sm.get_secret_value(SecretId=arn)["SecretString"]) == first
    loaded = settings.load({"STAGE": "prod", "SECRETS_ARN": arn})
    assert loaded.nonce_key == first["NONCE_KEY"]


def test_sms_spend_limit_is_a_parameter_applied_by_custom_resource(templates):
    for t in templates.values():
        assert t["Parameters"]["SmsMonthlySpendLimitUsd"]["Type"] == "Number"
        props = t["Resources"]["SmsPreferences"]["Properties"]
        assert props["MonthlySpendLimit"] == {"Ref": "SmsMonthlySpendLimitUsd"}
    assert sms_settings.attributes({"MonthlySpendLimit": "25"}) == {
        "MonthlySpendLimit": "25",
        "DefaultSMSType": "Transactional",
    }


# --- IAM --------------------------------------------------------------------------------------


def test_no_wildcard_where_a_narrower_grant_exists(templates, iam_actions):
    for t in templates.values():
        for name, role in resources_of(t, "AWS::IAM::Role").items():
            for st in statements(role):
                assert st["Effect"] == "Allow", name
                for action in as_list(st["Action"]):
                    assert "*" not in action, f"{name}: wildcard action {action}"
                if "NotResource" in st:
                    # Direct-to-phone SMS: every topic is excluded, nothing else is granted.
                    assert st["Action"] == ["sns:Publish"], name
                    assert st["NotResource"] == {"Fn::Sub": "arn:${AWS::Partition}:sns:*:*:*"}
                    continue
                if "*" in as_list(st["Resource"]):
                    assert st["Resource"] == "*", name
                    for action in st["Action"]:
                        service, verb = action.split(":")
                        kinds = iam_actions[service]["Actions"][verb.lower()].get("Resources")
                        assert not kinds, f"{name}: {action} can be scoped to {kinds}"


def test_each_function_role_grants_exactly_its_tables(templates, functions):
    for t in templates.values():
        for fn in functions:
            wanted = {spec.logical: level for spec, level in fn.access.tables}
            granted: dict[str, set[str]] = {}
            for st in statements(t["Resources"][fn.cfn + "Role"]):
                actions = set(as_list(st["Action"]))
                data = {a for a in actions if a.startswith("dynamodb:")} - {
                    "dynamodb:ListStreams",
                    "dynamodb:DescribeStream",
                    "dynamodb:GetRecords",
                    "dynamodb:GetShardIterator",
                }
                if not data:
                    continue
                for logical in table_refs(st["Resource"]):
                    granted.setdefault(logical, set()).update(data)
            assert set(granted) == set(wanted), fn.name
            for logical, level in wanted.items():
                assert granted[logical] == set(access.ACTIONS[level]), (fn.name, logical)
                assert "dynamodb:Scan" not in granted[logical]


def test_function_extras_are_granted_only_where_needed(templates, functions):
    for t in templates.values():
        for fn in functions:
            sts = statements(t["Resources"][fn.cfn + "Role"])
            actions = {a for st in sts for a in as_list(st["Action"])}
            assert ("sns:Publish" in actions) == fn.access.sms, fn.name
            assert ("sqs:SendMessage" in actions) == bool(fn.access.edge_queues or fn.streams)
            assert "secretsmanager:GetSecretValue" in actions
            assert not any(a.startswith(("lambda:", "iam:", "ecs:")) for a in actions)
            logs = next(st for st in sts if st["Sid"] == "OwnLogs")
            assert fn.name + ":*" in logs["Resource"]["Fn::Sub"]


def test_edge_task_role_invokes_functions_and_reads_own_queue_only(templates, functions):
    edge_fns = {fn.cfn for fn in functions if fn.kind == "edge"}
    for stage, t in templates.items():
        roles = {k: v for k, v in resources_of(t, "AWS::IAM::Role").items() if "EdgeTaskRole" in k}
        assert len(roles) == template.STAGES[stage].edge_max_slots
        for name, role in roles.items():
            slot = name.removeprefix("EdgeTaskRole")
            sts = statements(role)
            actions = {a for st in sts for a in as_list(st["Action"])}
            assert not any(a.startswith(("dynamodb:", "secretsmanager:", "sns:")) for a in actions)
            invoke = next(st for st in sts if st["Action"] == ["lambda:InvokeFunction"])
            assert {r["Fn::GetAtt"][0] for r in invoke["Resource"]} == edge_fns
            queue = next(st for st in sts if st["Sid"] == "OwnQueue")
            assert queue["Resource"] == {"Fn::GetAtt": [f"EdgeQueue{slot}", "Arn"]}
            assert "sqs:CreateQueue" not in actions and "sqs:SendMessage" not in actions


def test_stream_handlers_are_wired_to_their_tables(templates, functions):
    handlers = [fn for fn in functions if fn.kind == "stream"]
    assert {spec.logical for fn in handlers for _, spec in fn.streams} >= {
        "Accounts",
        "PhoneIndex",
    }
    for t in templates.values():
        for fn in handlers:
            events = t["Resources"][fn.cfn]["Properties"]["Events"]
            assert set(events) == {event_id for event_id, _ in fn.streams}
            for event_id, spec in fn.streams:
                assert spec.logical in STREAM_TABLES
                props = events[event_id]["Properties"]
                assert events[event_id]["Type"] == "DynamoDB"
                assert props["Stream"] == {"Fn::GetAtt": [template.table_id(spec), "StreamArn"]}
                assert props["MaximumRetryAttempts"] > 0 and props["BisectBatchOnFunctionError"]
            reads = next(
                st
                for st in statements(t["Resources"][fn.cfn + "Role"])
                if st["Sid"] == "ReadOwnStreams"
            )
            assert {r["Fn::GetAtt"][0] for r in reads["Resource"]} == {
                template.table_id(spec) for _, spec in fn.streams
            }


# --- environment ------------------------------------------------------------------------------

KNOWN_ENV = {f.metadata["env"] for f in settings.fields(settings.Settings)}


def known(name: str) -> bool:
    return name in KNOWN_ENV or name.startswith(("TABLE_", "POWERTOOLS_", "AWS_"))


def test_function_environment_names_tables_and_secret(templates, functions):
    for stage, t in templates.items():
        for fn in functions:
            env = t["Resources"][fn.cfn]["Properties"]["Environment"]["Variables"]
            for spec in tables.ALL:
                assert env[spec.env_var] == {"Ref": template.table_id(spec)}
            assert env["SECRETS_ARN"] == {"Ref": "HmacKeysSecret"}
            assert env["STAGE"] == stage
            assert env["EDGE_QUEUE_PREFIX"] == {"Fn::Sub": "${AWS::StackName}-edge-"}
            assert all(known(n) for n in env), sorted(n for n in env if not known(n))


def test_chalice_stage_environment_is_valid_settings():
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    assert set(config["stages"]) >= {"dev", "prod"}
    for stage in config["stages"].values():
        env = {**config.get("environment_variables", {}), **stage["environment_variables"]}
        assert all(known(n) for n in env)
        # `chalice.test.Client` applies the dev stage's variables: they must not break tests.
        assert "STAGE" not in env
        settings.load(env)


def container(t: dict[str, Any], slot: int) -> dict[str, Any]:
    return t["Resources"][f"EdgeTaskDefinition{slot}"]["Properties"]["ContainerDefinitions"][0]


def test_edge_task_definition(templates):
    dockerfile = (ROOT / "sip_edge" / "Dockerfile").read_text()
    for stage, t in templates.items():
        for slot in range(1, template.STAGES[stage].edge_max_slots + 1):
            props = t["Resources"][f"EdgeTaskDefinition{slot}"]["Properties"]
            assert props["RequiresCompatibilities"] == ["FARGATE"]
            assert props["NetworkMode"] == "awsvpc"
            c = container(t, slot)
            assert "${EdgeImageTag}" in c["Image"]["Fn::Sub"]
            env = {e["Name"]: e["Value"] for e in c["Environment"]}
            assert all(known(n) for n in env)
            assert "SECRETS_ARN" not in env, "the task role cannot read the secret"
            assert env["SIP_FUNCTIONS"] == "lambda"
            assert env["EDGE_ID"] == str(slot)
            assert env["EDGE_QUEUE_URL"] == {"Ref": f"EdgeQueue{slot}"}
            queue = t["Resources"][f"EdgeQueue{slot}"]["Properties"]["QueueName"]["Fn::Sub"]
            assert queue == env["EDGE_QUEUE_PREFIX"]["Fn::Sub"] + env["EDGE_ID"]
            assert [s["Name"] for s in c["Secrets"]] == ["NONCE_KEY"]
            assert c["LogConfiguration"]["LogDriver"] == "awslogs"
            probe = c["HealthCheck"]["Command"]
            assert json.dumps(probe[1:]) in dockerfile, "same probe as the Dockerfile"
            service = t["Resources"][f"EdgeService{slot}"]["Properties"]
            assert service["DeploymentConfiguration"]["MaximumPercent"] == 100


def test_load_balancer_listens_udp_tcp_and_tls(templates):
    for t in templates.values():
        listeners = {
            v["Properties"]["Port"]: v
            for v in resources_of(t, "AWS::ElasticLoadBalancingV2::Listener").values()
        }
        assert listeners[5060]["Properties"]["Protocol"] == "TCP_UDP"
        tls = listeners[5061]
        assert tls["Properties"]["Protocol"] == "TLS"
        assert tls["Properties"]["Certificates"] == [
            {"CertificateArn": {"Ref": "TlsCertificateArn"}}
        ]
        for tg in resources_of(t, "AWS::ElasticLoadBalancingV2::TargetGroup").values():
            assert tg["Properties"]["TargetType"] == "ip"
        assert t["Resources"]["SipLoadBalancer"]["Properties"]["Type"] == "network"
        for p in ("VpcId", "NlbSubnetIds", "EdgeSubnetIds", "EdgeImageTag"):
            assert p in t["Parameters"]


def test_alarms_cover_functions_tables_and_sms(templates, functions):
    for t in templates.values():
        alarms = resources_of(t, "AWS::CloudWatch::Alarm")
        for fn in functions:
            assert alarms[fn.cfn + "ErrorsAlarm"]["Properties"]["MetricName"] == "Errors"
            assert alarms[fn.cfn + "ThrottlesAlarm"]["Properties"]["MetricName"] == "Throttles"
        for spec in tables.ALL:
            metrics = alarms[template.table_id(spec) + "ThrottleAlarm"]["Properties"]["Metrics"]
            names = {m["MetricStat"]["Metric"]["MetricName"] for m in metrics if "MetricStat" in m}
            assert names == {"ReadThrottleEvents", "WriteThrottleEvents"}
        assert alarms["SmsSpendAlarm"]["Properties"]["MetricName"] == "SMSMonthToDateSpentUSD"
        for name in ("DiscoveryBudgetDry", "AuthBlocked", "SipFloodBans"):
            props = alarms[name + "Alarm"]["Properties"]
            assert (props["Namespace"], props["MetricName"]) == ("SmartContacts", name)
        for alarm in alarms.values():
            assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_edge_slot_conditions_stay_within_fn_or_limits():
    def check(node: Any) -> None:
        if isinstance(node, dict) and "Fn::Or" in node:
            assert 2 <= len(node["Fn::Or"]) <= 10
            for child in node["Fn::Or"]:
                check(child)

    many = [{"Fn::Equals": [{"Ref": "EdgeSlots"}, str(n)]} for n in range(1, 33)]
    check(template.any_of(many))
    assert template.any_of(many[:1]) == many[0]


def test_every_table_is_granted_to_some_function(functions):
    # A table nobody may touch is either dead or, more likely, a grant someone forgot.
    granted = {spec.logical for fn in functions for spec, _ in fn.access.tables}
    assert granted == {spec.logical for spec in tables.ALL}


def test_push_applications_come_from_the_credentials_secret(aws):
    from chalicelib.aws import client

    sns, sm = client("sns"), client("secretsmanager")
    assert push_apps.apply({"SecretId": "", "Prefix": "st"}, sns, sm) == {
        "Fcm": "", "Apns": "", "ApnsSandbox": ""}  # fmt: skip
    credentials = {
        "fcm": {"PlatformCredential": "service-account-json"},
        "apns": {"PlatformCredential": "p8-key", "PlatformPrincipal": "KEYID"},
    }
    sm.create_secret(Name="st/push", SecretString=json.dumps(credentials))
    made = push_apps.apply({"SecretId": "st/push", "Prefix": "st"}, sns, sm)
    assert made["ApnsSandbox"] == "" and made["Fcm"].endswith("/GCM/st-gcm")
    assert made["Apns"].endswith("/APNS/st-apns")
    # Applied again (a stack update): the same applications.
    assert push_apps.apply({"SecretId": "st/push", "Prefix": "st"}, sns, sm) == made
    push_apps.remove({"Prefix": "st"}, sns)
    assert sns.list_platform_applications()["PlatformApplications"] == []


def test_functions_are_told_the_push_applications_and_the_public_addresses(templates):
    for t in templates.values():
        props = t["Resources"]["PushApplications"]["Properties"]
        assert props["SecretId"] == {"Ref": "PushCredentialsSecret"}
        env = t["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]
        assert env["PUSH_FCM_APPLICATION_ARN"] == {"Fn::GetAtt": ["PushApplications", "Fcm"]}
        assert env["PUBLIC_URL"] == {"Ref": "PublicUrl"}
        assert env["SIP_PROXY_URI"]["Fn::If"][0] == "HasTls"
        grants = {st["Sid"]: st for st in statements(t["Resources"]["APIHandlerRole"])}
        assert grants["PushToOwnEndpoints"]["Action"] == [
            "sns:Publish",
            "sns:SetEndpointAttributes",
        ]
