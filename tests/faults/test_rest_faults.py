"""The REST API over real HTTP (chalice's local server on loopback, in-process moto) with
DynamoDB or SNS throttling, refusing or stalling: 503 + Retry-After within 5 s, never a 500 or
a hang; the first request after recovery succeeds."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator

import pytest

from devstack.rest_thread import RestThread
from testkit.ports import free_port
from tests.faults.botofaults import Faults

ANSWER_WITHIN = 5.0


@pytest.fixture
def rest(aws) -> Iterator[tuple[str, int]]:
    port = free_port()
    with RestThread("127.0.0.1", port, name="rest-faults"):
        yield ("127.0.0.1", port)


def _post(address: tuple[str, int], path: str, body: dict) -> tuple[int, dict, float]:
    conn = http.client.HTTPConnection(*address, timeout=30)
    start = time.monotonic()
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    elapsed = time.monotonic() - start
    headers = {k.lower(): v for k, v in r.getheaders()}
    conn.close()
    return r.status, {"headers": headers, "body": data}, elapsed


@pytest.mark.parametrize(
    ("service", "mode"),
    [("dynamodb", "throttle"), ("dynamodb", "refuse"), ("dynamodb", "stall"),
     ("sns", "throttle"), ("sns", "stall")],
)  # fmt: skip
def test_aws_down_gets_503_with_retry_after_within_5_s(rest, service, mode):
    faults = Faults()
    faults.set(service, mode)
    try:
        status, answer, elapsed = _post(rest, "/v1/signup/phone", {"phone": "+33612345678"})
    finally:
        faults.clear()
    assert status == 503, (status, answer["body"][:200])
    assert int(answer["headers"]["retry-after"]) >= 1
    assert elapsed < ANSWER_WITHIN, f"503 after {elapsed:.2f} s"
    assert json.loads(answer["body"])["error"]["code"] in ("unavailable", "sms_unavailable")
    status, answer, _ = _post(rest, "/v1/signup/phone", {"phone": "+33612345679"})
    assert status == 202, (status, answer["body"][:200])
