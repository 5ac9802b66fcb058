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
