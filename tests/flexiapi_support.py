"""Helpers for the Linphone apps' account API tests: SNS platform applications in moto, the
pushes moto received (the apps' creation tokens), and requests as the two SDKs send them
(FlexiAPI's headers, Digest answered with the From's account)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

from chalicelib import digest
from tests.accounts_support import challenges
from tests.conftest import reset_caches

FCM = {"pn_provider": "fcm", "pn_param": "123456789012", "pn_prid": "f00dcafe:APA91bE-0123"}
APNS = {
    "pn_provider": "apns",
    "pn_param": "ABCD1234.org.linphone.phone.remote",
    "pn_prid": "A" * 64,
}
APP_PASSWORD = "linphone secret"
#: The headers both SDKs send with a JSON body (5.1: always; 6: only with a body).
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def create_push_applications(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """One SNS platform application per provider, in moto, named in the settings."""
    from chalicelib.aws import client

    sns = client("sns")
    arns = {}
    for setting, platform in (
        ("PUSH_FCM_APPLICATION_ARN", "GCM"),
        ("PUSH_APNS_APPLICATION_ARN", "APNS"),
        ("PUSH_APNS_SANDBOX_APPLICATION_ARN", "APNS_SANDBOX"),
    ):
        answer = sns.create_platform_application(
            Name=f"linphone-{platform.lower()}",
            Platform=platform,
            Attributes={"PlatformCredential": "test-credential"},
        )
        arns[setting] = answer["PlatformApplicationArn"]
        monkeypatch.setenv(setting, arns[setting])
    reset_caches()
    return arns


@pytest.fixture
def push_apps(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    yield create_push_applications(monkeypatch)


def pushes() -> list[tuple[str, dict[str, Any]]]:
    """(device token, SNS message structure) of every push moto's SNS received, oldest first."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sns.models import sns_backends

    from chalicelib.aws import region

    backend = sns_backends[DEFAULT_ACCOUNT_ID][region()]
    out = []
    for endpoint in list(backend.platform_endpoints.values()):
        for message in list(endpoint.messages.values()):
            out.append((endpoint.token, json.loads(message)))
    return out


def pushed_token(prid: str) -> str:
    """The creation token in the last push to device `prid`, read as the apps read it: FCM's
    data `custom-payload` (JSON text), APNs' top-level `customPayload`."""
    sent = [m for token, m in pushes() if token == prid]
    assert sent, f"no push to {prid}"
    structure = sent[-1]
    if "GCM" in structure:
        data = json.loads(structure["GCM"])["fcmV1Message"]["message"]["android"]["data"]
        return str(json.loads(data["custom-payload"])["token"])
    key = "APNS" if "APNS" in structure else "APNS_SANDBOX"
    return str(json.loads(structure[key])["customPayload"]["token"])


def post_json(client: Client, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.http.post(path, headers={**JSON_HEADERS, **(headers or {})}, body=raw)


def new_token(client: Client, device: dict[str, str] = FCM, route: str = "/api/tokens") -> str:
    r = post_json(client, route, device)
    assert r.status_code == 200, r.body
    return pushed_token(device["pn_prid"])


def create_account(
    client: Client,
    username: str,
    password: str = APP_PASSWORD,
    device: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Sign up as Linphone 6 does: a token by push (to a phone of its own), then the account
    (pending)."""
    token = new_token(client, device or {**FCM, "pn_prid": f"{FCM['pn_prid']}-{username}"})
    body = {
        "account_creation_token": token,
        "algorithm": "SHA-256",
        "password": password,
        "username": username,
    }
    r = post_json(client, "/api/accounts/with-account-creation-token", body)
    assert r.status_code == 200, r.body
    return dict(r.json_body)


def signed(
    client: Client,
    method: str,
    path: str,
    username: str,
    password: str = APP_PASSWORD,
    *,
    body: Any = None,
    algorithm: str = "SHA-256",
    domain: str = "example.org",
    from_user: str | None = None,
) -> Any:
    """A request of the signed-in account as the SDKs make it: From names the account, the
    first try has no Authorization, the 401's challenge of `algorithm` is answered."""
    headers = {**JSON_HEADERS, "From": f"sip:{from_user or username}@{domain}"}
    raw = None if body is None else json.dumps(body)
    send = getattr(client.http, method.lower())
    first = send(path, headers=headers, body=raw) if raw else send(path, headers=headers)
    if first.status_code != 401:
        return first
    for value in challenges(first):
        if digest.parse_params(value).get("algorithm") == algorithm:
            break
    else:
        raise AssertionError(f"no {algorithm} challenge in {challenges(first)}")
    auth = digest_answer(value, username, password, method, path)
    headers = {**headers, "Authorization": auth}
    return send(path, headers=headers, body=raw) if raw else send(path, headers=headers)


def digest_answer(challenge: str, username: str, password: str, method: str, uri: str) -> str:
    """An Authorization in the 5.1 SDK's form (algorithm quoted, nc=00000001, qop=auth)."""
    params = digest.parse_params(challenge)
    algorithm = params.get("algorithm", "MD5")
    ha1 = digest.ha1(algorithm, username, params["realm"], password)
    cnonce, nc = "qfn851M8kjobViFZ", "00000001"
    response = digest.expected_response(
        algorithm, ha1, method, uri, params["nonce"], qop="auth", nc=nc, cnonce=cnonce
    )
    return (
        f'Digest realm="{params["realm"]}", nonce="{params["nonce"]}", algorithm="{algorithm}", '
        f'username="{username}", response="{response}", cnonce="{cnonce}", nc={nc}, qop=auth, '
        f'uri="{uri}"'
    )
