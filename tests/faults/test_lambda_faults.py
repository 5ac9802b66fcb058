"""The edge's Lambda invoke client when Lambda throttles, refuses or stalls: FunctionError (the
phone's 503) within the request deadline, one attempt only (a retried invoke would run the
function twice), and the breaker opens after repeated failures."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from chalicelib import settings
from sip_edge import functions
from tests.faults.botofaults import Faults


@pytest.mark.parametrize("mode", ["throttle", "refuse", "stall"])
def test_invoke_fails_fast_and_is_not_retried(aws, mode):
    cfg = dataclasses.replace(settings.get(), sip_request_deadline=1.0, sip_breaker_failures=2)
    lam = functions.LambdaFunctions("sc-test-", 4, cfg)
    faults = Faults()
    faults.hook("lambda", lam._client)
    faults.set("lambda", mode)
    try:
        start = time.monotonic()
        with pytest.raises(functions.FunctionError):
            asyncio.run(lam.call("sip_auth", {"x": 1}))
        elapsed = time.monotonic() - start
        assert elapsed < cfg.sip_request_deadline + 1.0, f"{mode}: failed after {elapsed:.2f} s"
        assert faults.calls["lambda"] == 1, "the invoke was retried"
        with pytest.raises(functions.FunctionError):
            asyncio.run(lam.call("sip_auth", {"x": 1}))
        with pytest.raises(functions.FunctionError, match="circuit open"):
            asyncio.run(lam.call("sip_auth", {"x": 1}))
        assert faults.calls["lambda"] == 2, "an open breaker still invoked"
    finally:
        faults.clear()
