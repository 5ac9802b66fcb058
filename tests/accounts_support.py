"""Helpers shared by the account, sign-up and discovery tests: REST requests and
authentication headers, sign-ups, and moving past the SMS interval (the SMS themselves:
`testkit.sms`)."""

from __future__ import annotations

import base64
import json
from typing import Any

from chalice.test import Client

from chalicelib import digest, settings
from testkit.sms import last_code
from tests.conftest import advance_clock

H_JSON = {"Content-Type": "application/json"}
PASSWORD = "correct horse"


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


def expire_codes() -> None:
    """Move past the lifetime of every code sent so far."""
    advance_clock(settings.get().code_ttl_seconds + 1)


def pass_interval() -> None:
    """Move past the per-number SMS interval (the 24 h and hourly logs still count)."""
    advance_clock(settings.get().sms_per_number_interval + 1)
