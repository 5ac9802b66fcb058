"""Helpers shared by the account, sign-up and discovery tests: the SMS moto received, a REST
client, authentication headers, and DynamoDB-like atomicity for moto under threads."""

from __future__ import annotations

import base64
import functools
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

from chalicelib import clock, digest

H_JSON = {"Content-Type": "application/json"}
PASSWORD = "correct horse"


def sent_sms() -> list[tuple[str, str]]:
    """(E.164, text) of every SMS published to moto's SNS, oldest first."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sns.models import sns_backends

    from chalicelib.aws import region

    return list(sns_backends[DEFAULT_ACCOUNT_ID][region()].sms_messages.values())


def last_code(e164: str) -> str:
    texts = [text for number, text in sent_sms() if number == e164]
    assert texts, f"no SMS sent to {e164}"
    return re.findall(r"\d{4,10}", texts[-1])[-1]


@pytest.fixture(name="api")
def api_fixture(aws: None) -> Iterator[Client]:
    """The Chalice app behind chalice.test.Client, on in-process moto, clock at now."""
    from app import app

    clock.reset()
    with Client(app) as c:
        yield c
    clock.reset()


def post(client: Client, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.http.post(path, headers={**H_JSON, **(headers or {})}, body=raw)


def basic(username: str, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def digest_header(
    challenge: str,
    username: str,
    password: str,
    method: str,
    uri: str,
    *,
    realm: str | None = None,
) -> dict[str, str]:
    """Authorization answering one `Digest ...` challenge, as a client computes it."""
    params = digest.parse_params(challenge)
    algorithm = params.get("algorithm", "MD5")
    realm = realm or params["realm"]
    ha1 = digest.ha1(algorithm, username, realm, password)
    cnonce, nc = "0a4f113b", "00000001"
    response = digest.expected_response(
        algorithm, ha1, method, uri, params["nonce"], qop="auth", nc=nc, cnonce=cnonce
    )
    value = (
        f'Digest username="{username}", realm="{realm}", nonce="{params["nonce"]}", '
        f'uri="{uri}", algorithm={algorithm}, qop=auth, nc={nc}, cnonce="{cnonce}", '
        f'response="{response}"'
    )
    return {"Authorization": value}


def challenges(response: Any) -> list[str]:
    value = response.headers.get("WWW-Authenticate") or response.headers.get("www-authenticate")
    return value if isinstance(value, list) else [value]


def sign_up(
    client: Client, e164: str, username: str | None = None, password: str = PASSWORD
) -> dict[str, Any]:
    """Full sign-up through REST; answers the confirm's JSON."""
    body: dict[str, Any] = {"phone": e164}
    if username:
        body["username"] = username
    r = post(client, "/v1/signup/phone", body)
    assert r.status_code == 202, r.body
    r = post(
        client,
        "/v1/signup/phone/confirm",
        {"phone": e164, "code": last_code(e164), "password": password},
    )
    assert r.status_code in (200, 201), r.body
    return r.json_body


def pass_interval() -> None:
    """Move past the per-number SMS interval (the 24 h and hourly logs still count)."""
    clock.advance(61)


@pytest.fixture
def atomic_moto(aws: None) -> Iterator[None]:
    """Serialize moto's DynamoDB operations as DynamoDB itself does per item and transaction.

    moto checks conditions and writes in separate Python steps (and restores a whole table
    copy when a transaction fails), so concurrent threads could interleave inside one
    operation; real DynamoDB never does. The application code still runs concurrently."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    names = ("put_item", "update_item", "delete_item", "get_item", "transact_write_items")
    originals = {name: getattr(DynamoDBBackend, name) for name in names}

    def locked(method: Any) -> Any:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return method(*args, **kwargs)

        return wrapper

    for name, method in originals.items():
        setattr(DynamoDBBackend, name, locked(method))
    try:
        yield
    finally:
        for name, method in originals.items():
            setattr(DynamoDBBackend, name, method)
