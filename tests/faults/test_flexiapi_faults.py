"""The Linphone apps' account API and provisioning over real HTTP (chalice's local server,
in-process moto) with SNS or DynamoDB stalled or throttled: 503 + Retry-After, in FlexiAPI's
JSON shape, within 5 s; nothing is spent (no push budget, no token, no link); the first request
after recovery succeeds."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib import accounts, digest
from chalicelib.accounts import provisioning
from devstack.rest_thread import RestThread
from testkit.ports import free_port
from tests.faults.botofaults import Faults
from tests.flexiapi_support import APP_PASSWORD, FCM, create_push_applications, pushed_token

ANSWER_WITHIN = 5.0


@pytest.fixture
def rest(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, int]]:
    create_push_applications(monkeypatch)
    port = free_port()
    with RestThread("127.0.0.1", port, name="flexiapi-faults"):
        yield ("127.0.0.1", port)


def call(
    address: tuple[str, int],
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes, float]:
    conn = http.client.HTTPConnection(*address, timeout=30)
    sent = {"Accept": "application/json", **(headers or {})}
    raw = None
    if body is not None:
        raw = json.dumps(body)
        sent["Content-Type"] = "application/json"
    start = time.monotonic()
    conn.request(method, path, raw, sent)
    r = conn.getresponse()
    data = r.read()
    elapsed = time.monotonic() - start
    answer = {k.lower(): v for k, v in r.getheaders()}
    challenges = [v for k, v in r.getheaders() if k.lower() == "www-authenticate"]
    if challenges:
        answer["www-authenticate"] = challenges[0]
    conn.close()
    return r.status, answer, data, elapsed


def signed(address: tuple[str, int], method: str, path: str, body: Any = None) -> Any:
    headers = {"From": "sip:kate@example.org"}
    status, answer, data, elapsed = call(address, method, path, body, headers)
    if status != 401:
        return status, answer, data, elapsed
    params = digest.parse_params(answer["www-authenticate"])
    ha1 = digest.ha1(params["algorithm"], "kate", params["realm"], APP_PASSWORD)
    response = digest.expected_response(
        params["algorithm"], ha1, method, path, params["nonce"], qop="auth", nc="00000001",
        cnonce="abcdef",
    )  # fmt: skip
    headers["Authorization"] = (
        f'Digest username="kate", realm="{params["realm"]}", nonce="{params["nonce"]}", '
        f'uri="{path}", response="{response}", algorithm={params["algorithm"]}, qop=auth, '
        'nc=00000001, cnonce="abcdef"'
    )
    return call(address, method, path, body, headers)


def unavailable(status: int, answer: dict[str, str], data: bytes, elapsed: float) -> None:
    assert status == 503, (status, data[:200])
    assert int(answer["retry-after"]) >= 1
    assert answer["content-type"] == "application/json"
    assert json.loads(data)["message"]
    assert elapsed < ANSWER_WITHIN, f"503 after {elapsed:.2f} s"


@pytest.mark.parametrize("mode", ["stall", "throttle"])
def test_a_push_that_cannot_leave_is_503_and_spends_nothing(rest, mode):
    faults = Faults()
    faults.set("sns", mode)
    try:
        unavailable(*call(rest, "POST", "/api/account_creation_tokens/send-by-push", FCM))
    finally:
        faults.clear()
    # The device's interval was not spent: it may ask again at once.
    status, _, data, _ = call(rest, "POST", "/api/account_creation_tokens/send-by-push", FCM)
    assert status == 200, data


def test_a_stalled_table_leaves_the_token_usable(rest):
    status, *_ = call(rest, "POST", "/api/tokens", FCM)
    assert status == 200
    body = {"account_creation_token": pushed_token(FCM["pn_prid"]), "algorithm": "SHA-256",
            "password": APP_PASSWORD, "username": "kate"}  # fmt: skip
    faults = Faults()
    faults.set("dynamodb", "stall")
    try:
        unavailable(*call(rest, "POST", "/api/accounts/with-account-creation-token", body))
    finally:
        faults.clear()
    status, _, data, _ = call(rest, "POST", "/api/accounts/with-account-creation-token", body)
    assert status == 200, data
    assert accounts.get_by_username("kate") is not None


def test_the_phone_request_with_sms_stalled_is_503(rest):
    accounts.create("kate", accounts.credentials_from_password("kate", APP_PASSWORD))
    faults = Faults()
    faults.set("sns", "stall")
    try:
        unavailable(
            *signed(rest, "POST", "/api/accounts/me/phone/request", {"phone": "+33622222222"})
        )
    finally:
        faults.clear()
    status, _, data, _ = signed(
        rest, "POST", "/api/accounts/me/phone/request", {"phone": "+33622222222"}
    )
    assert status == 200, data


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/accounts/me", None),
        ("GET", "/api/accounts/kate@example.org/info", None),
        ("POST", "/api/accounts/kate@example.org/activate/email", {"code": "1234"}),
        ("POST", "/api/accounts/me/phone", {"code": "1234"}),
        ("POST", "/api/accounts/me/password",
         {"algorithm": "SHA-256", "old_password": APP_PASSWORD, "password": "a new password"}),
        ("GET", "/api/accounts/me/devices", None),
        ("DELETE", "/api/accounts/me/devices/urn:uuid:x", {"device_uuid": "urn:uuid:x"}),
        ("GET", "/api/accounts/me/provision", None),
        ("DELETE", "/api/accounts/me", None),
    ],
)  # fmt: skip
def test_signed_in_routes_with_the_table_throttled_are_503(rest, method, path, body):
    accounts.create(
        "kate", accounts.credentials_from_password("kate", APP_PASSWORD), phone_e164="+33622222222"
    )
    faults = Faults()
    faults.set("dynamodb", "throttle")
    try:
        unavailable(*signed(rest, method, path, body))
    finally:
        faults.clear()
    # The first request after recovery gets its real answer (a code none sent: 4xx).
    status, _, data, _ = signed(rest, method, path, body)
    assert status < 500, data
    assert accounts.get_by_username("kate") is None or method != "DELETE" or "devices" in path


def test_request_tokens_with_the_table_throttled_are_503(rest):
    faults = Faults()
    faults.set("dynamodb", "throttle")
    try:
        unavailable(*call(rest, "POST", "/api/account_creation_request_tokens"))
        trade = {"account_creation_request_token": "x" * 22}
        route = "/api/account_creation_tokens/using-account-creation-request-token"
        unavailable(*call(rest, "POST", route, trade))
    finally:
        faults.clear()
    assert call(rest, "POST", "/api/account_creation_request_tokens")[0] == 201


def test_a_provisioning_link_survives_a_stall(rest):
    account = accounts.create(
        "kate", accounts.credentials_from_password("kate", APP_PASSWORD), phone_e164="+33622222222"
    )
    link = provisioning.issue_link(account, f"http://{rest[0]}:{rest[1]}")
    path = "/" + link.url.split("/", 3)[3]
    faults = Faults()
    faults.set("dynamodb", "stall")
    try:
        status, answer, data, elapsed = call(rest, "GET", path, headers={"User-Agent": "Unknown"})
    finally:
        faults.clear()
    assert status == 503 and int(answer["retry-after"]) >= 1 and elapsed < ANSWER_WITHIN
    status, answer, data, _ = call(rest, "GET", path, headers={"User-Agent": "Unknown"})
    assert status == 200 and b"<config" in data
