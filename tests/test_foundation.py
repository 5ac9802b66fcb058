"""The foundation: settings, table schemas, health route."""

from __future__ import annotations

import pytest
from chalice.test import Client

from chalicelib import settings, tables
from chalicelib.aws import client


def test_health(aws):
    from app import app

    with Client(app) as c:
        r = c.http.get("/v1/health")
    assert r.status_code == 200
    assert r.json_body == {"status": "ok"}


def test_every_table_is_created_with_ttl(aws):
    names = set(client("dynamodb").list_tables()["TableNames"])
    assert {t.name() for t in tables.ALL} <= names
    for spec in tables.ALL:
        desc = client("dynamodb").describe_table(TableName=spec.name())["Table"]
        assert desc["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        if spec.ttl_attribute:
            ttl = client("dynamodb").describe_time_to_live(TableName=spec.name())
            assert ttl["TimeToLiveDescription"]["AttributeName"] == spec.ttl_attribute


def test_deployed_stage_refuses_development_key():
    with pytest.raises(RuntimeError, match="development"):
        settings.load({"STAGE": "prod"})
    ok = settings.load(
        {"STAGE": "prod", "PHONE_HASH_KEY": "a", "CODE_HASH_KEY": "b", "NONCE_KEY": "c"}
    )
    assert ok.stage == "prod"


def test_settings_from_environment():
    s = settings.load({"CODE_LENGTH": "6", "SMS_ALLOWED_REGIONS": "fr, be"})
    assert s.code_length == 6
    assert s.sms_allowed_regions == ("FR", "BE")


def test_deployed_stage_reads_its_keys_from_secrets_manager(aws):
    import json

    arn = client("secretsmanager").create_secret(
        Name="sc-keys",
        SecretString=json.dumps(
            {"PHONE_HASH_KEY": "p" * 32, "CODE_HASH_KEY": "c" * 32, "NONCE_KEY": "n" * 32}
        ),
    )["ARN"]
    loaded = settings.load({"STAGE": "prod", "SECRETS_ARN": arn})
    assert (loaded.phone_hash_key, loaded.code_hash_key, loaded.nonce_key) == (
        "p" * 32,
        "c" * 32,
        "n" * 32,
    )
