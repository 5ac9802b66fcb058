"""How the edge reaches its functions: lambda.invoke on AWS (checked against botocore's own
request validation with a Stubber, since no Lambda runs here) and in-process locally."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from chalicelib import settings
from sip_edge import functions


def _body(data: dict) -> StreamingBody:
    raw = json.dumps(data).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def test_lambda_mode_invokes_prefixed_functions(aws):
    client = functions.LambdaFunctions("sc-prod-")
    with Stubber(client._client) as stub:
        stub.add_response(
            "invoke",
            {"StatusCode": 200, "Payload": _body({"result": "ok", "aor": "a@example.org"})},
            {"FunctionName": "sc-prod-sip_auth", "Payload": json.dumps({"x": 1}).encode()},
        )
        stub.add_response(
            "invoke",
            {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": _body({"e": "boom"})},
            {"FunctionName": "sc-prod-presence_lookup", "Payload": b"{}"},
        )
        assert asyncio.run(client.call("sip_auth", {"x": 1})) == {
            "result": "ok",
            "aor": "a@example.org",
        }
        with pytest.raises(functions.FunctionError, match="presence_lookup"):
            asyncio.run(client.call("presence_lookup", {}))


def test_one_setting_chooses_the_mode(aws):
    cfg = settings.get()
    import dataclasses

    lam = functions.from_settings(dataclasses.replace(cfg, sip_functions="lambda"))
    assert isinstance(lam, functions.LambdaFunctions)
    local = functions.from_settings(dataclasses.replace(cfg, sip_functions="inprocess"))
    assert isinstance(local, functions.InProcessFunctions)
    assert asyncio.run(local.call("sip_auth", {"method": "REGISTER", "realm": "example.org",
                                               "params": {}}))["result"] == "forbidden"  # fmt: skip
    with pytest.raises(functions.FunctionError, match="no function"):
        asyncio.run(local.call("nope", {}))
    with pytest.raises(ValueError):
        functions.from_settings(dataclasses.replace(cfg, sip_functions="carrier-pigeon"))


def test_lambda_mode_tells_the_function_how_long_the_edge_still_waits(aws):
    from chalicelib import edge_contract
    from sip_edge.fail_fast import DEADLINE

    client = functions.LambdaFunctions("sc-prod-")
    sent: list[dict] = []

    def record(params, **_):
        sent.append(json.loads(params["Payload"]))

    client._client.meta.events.register("before-parameter-build.lambda.Invoke", record)
    with Stubber(client._client) as stub:
        stub.add_response("invoke", {"StatusCode": 200, "Payload": _body({"result": "ok"})})

        async def inside_a_request() -> dict:
            import time

            DEADLINE.set(time.monotonic() + 1.5)  # as the edge sets it for each SIP request
            return await client.call("sip_auth", {"x": 1})

        assert asyncio.run(inside_a_request()) == {"result": "ok"}
    assert sent[0]["x"] == 1 and 0 < sent[0][edge_contract.TIME_LEFT] <= 1.5


def test_a_function_stops_its_aws_calls_where_the_edge_stops_waiting(aws):
    """With no time left, presence_lookup does not start a DynamoDB call: it gives up (the
    invoke reports a FunctionError, which the edge answers 503 + Retry-After)."""
    import app
    from chalicelib import edge_contract
    from chalicelib.resilience import DeadlineExceeded

    event = {
        "subscriber": "alice@example.org",
        "entries": ["sip:+33612345678@example.org;user=phone"],
        edge_contract.TIME_LEFT: 0,
    }
    with pytest.raises(DeadlineExceeded):
        app.presence_lookup(event, None)
    event[edge_contract.TIME_LEFT] = 5
    assert "error" not in app.presence_lookup(event, None)
