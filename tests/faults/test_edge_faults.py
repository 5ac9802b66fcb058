"""The edge over real UDP with DynamoDB throttling, refusing or stalling (botocore-level faults
under the in-process functions): list and single SUBSCRIBE, REGISTER and PUBLISH get 503 with a
jittered Retry-After within 3 s, OPTIONS keep flowing, the first request after recovery works,
and a function that keeps failing trips its breaker (503 at once) until a probe succeeds."""

from __future__ import annotations

import statistics
import time

import pytest

from testkit.sip_client import SipClient
from tests.edge.conftest import DOMAIN, EdgeThread, make_account
from tests.edge.test_edge_subscribe import LIST_HEADERS, RLS, resource_list
from tests.faults.botofaults import Faults

ALICE = f"sip:alice@{DOMAIN}"
BOB = f"sip:bob@{DOMAIN}"
PIDF = (
    '<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" '
    f'entity="{ALICE}"><tuple id="t1"><status><basic>open</basic></status></tuple></presence>'
).encode()
ANSWER_WITHIN = 3.0


def _send(c: SipClient, kind: str) -> None:
    if kind == "list SUBSCRIBE":
        c.request("SUBSCRIBE", RLS, from_uri=ALICE, to=f"<{RLS}>", headers=LIST_HEADERS,
                  body=resource_list([BOB, f"sip:+33612345678@{DOMAIN};user=phone"]))  # fmt: skip
    elif kind == "SUBSCRIBE":
        c.request("SUBSCRIBE", BOB, from_uri=ALICE, to=f"<{BOB}>",
                  headers=[("Event", "presence"), ("Accept", "application/pidf+xml"),
                           ("Expires", "600")])  # fmt: skip
    elif kind == "REGISTER":
        c.request("REGISTER", f"sip:{DOMAIN}", from_uri=ALICE, headers=[("Expires", "600")])
    else:
        c.request("PUBLISH", ALICE, from_uri=ALICE, body=PIDF,
                  headers=[("Event", "presence"), ("Content-Type", "application/pidf+xml"),
                           ("Expires", "600")])  # fmt: skip


KINDS = ["list SUBSCRIBE", "SUBSCRIBE", "REGISTER", "PUBLISH"]


@pytest.fixture
def trusted_edge(aws):
    make_account("alice", "+33611111111")
    make_account("bob", "+33612345678")
    edge = EdgeThread(sip_trusted_proxies=("127.0.0.1",))
    yield edge
    edge.stop()


def _options_latency(address: tuple[str, int], n: int = 7) -> float:
    probe = SipClient(address)
    times = []
    for _ in range(n):
        start = time.monotonic()
        probe.request("OPTIONS", f"sip:{DOMAIN}", from_uri="sip:probe@example.net")
        r = probe.response("OPTIONS", timeout=2)
        assert r is not None and r.status == 200
        times.append(time.monotonic() - start)
    probe.close()
    return statistics.median(times)


@pytest.mark.parametrize("mode", ["throttle", "refuse", "stall"])
def test_dynamodb_down_gets_fast_503s_and_recovery_is_immediate(trusted_edge, mode):
    clients = {kind: SipClient(trusted_edge.address) for kind in KINDS}
    faults = Faults()
    faults.set("dynamodb", mode)
    try:
        sent = {}
        for kind, c in clients.items():  # all at once: one slow backend, four phones waiting
            _send(c, kind)
            sent[kind] = time.monotonic()
        options_median = _options_latency(trusted_edge.address)
        for kind, c in clients.items():
            method = kind.split()[-1]
            r = c.response(method, timeout=10)
            elapsed = time.monotonic() - sent[kind]
            assert r is not None, f"{kind}: no answer with DynamoDB {mode}"
            assert r.status == 503, (kind, r.status, r.reason)
            assert elapsed < ANSWER_WITHIN, f"{kind}: 503 after {elapsed:.2f} s"
            retry = int(r.headers.get("Retry-After"))
            assert 1 <= retry <= 10, retry
        # OPTIONS need no function: they keep flowing during the fault. Within 50 ms on an idle
        # machine; the bound leaves a loaded CI box slack.
        assert options_median < 0.25, f"OPTIONS median {options_median * 1000:.0f} ms"
    finally:
        faults.clear()
    for kind, c in clients.items():
        _send(c, kind)
        r = c.response(kind.split()[-1], timeout=5)
        assert r is not None and r.status < 300, (kind, r and r.status, r and r.reason)
        c.close()


def test_retry_after_is_jittered(trusted_edge):
    c = SipClient(trusted_edge.address)
    faults = Faults()
    faults.set("dynamodb", "throttle")
    try:
        seen = set()
        for _ in range(4):
            _send(c, "REGISTER")
            seen.add(c.response("REGISTER").headers.get("Retry-After"))
    finally:
        faults.clear()
    assert len(seen) > 1, f"every Retry-After was {seen}"
    c.close()


def test_a_failing_function_trips_its_breaker_until_a_probe_succeeds(aws):
    make_account("alice", "+33611111111")
    edge = EdgeThread(
        sip_trusted_proxies=("127.0.0.1",), sip_breaker_failures=3, sip_breaker_reset=1.0
    )
    c = SipClient(edge.address)
    faults = Faults()
    try:
        faults.set("dynamodb", "refuse")
        for _ in range(3):
            _send(c, "REGISTER")
            assert c.response("REGISTER").status == 503
        calls_before = faults.calls.get("dynamodb", 0)
        _send(c, "REGISTER")
        r = c.response("REGISTER")
        assert r.status == 503 and r.headers.get("Retry-After")
        assert faults.calls.get("dynamodb", 0) == calls_before, "an open breaker still called"
        assert edge.edge.functions.guard.is_open("sip_registrar")
        faults.clear()
        guard = edge.edge.functions.guard
        later = time.monotonic() + guard.breaker_reset  # SIP_BREAKER_RESET has lapsed:
        guard.clock = lambda: later  # the next call is the probe
        _send(c, "REGISTER")
        assert c.response("REGISTER").status == 200
        assert not edge.edge.functions.guard.is_open("sip_registrar")
    finally:
        faults.clear()
        c.close()
        edge.stop()
