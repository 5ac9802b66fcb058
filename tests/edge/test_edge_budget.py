"""Discovery budgets through the real edge: a scraper mixing REST and list
SUBSCRIBEs is answered about one budget's worth of numbers; re-subscribing a book is free; and
numbers deferred for lack of tokens reach the phone by partial NOTIFY once tokens are granted."""

from __future__ import annotations

import math
import secrets
import time

import pytest
from chalice.test import Client

from chalicelib import accounts, clock, settings
from chalicelib.accounts import discovery_budget
from testkit.notify_body import parse_notify
from testkit.sip_client import SipClient
from tests.accounts_support import basic, post
from tests.conftest import reset_caches
from tests.edge.conftest import DOMAIN, PASSWORD, EdgeThread, make_account
from tests.edge.test_edge_subscribe import LIST_HEADERS, RLS, resource_list
from tests.presence_helpers import put_account

ALICE = f"alice@{DOMAIN}"


def numbers(start: int, count: int) -> list[str]:
    return [f"+3361{i:07d}" for i in range(start, start + count)]


def parts_of(notify) -> tuple[bool, dict[str, str | None]]:
    """(full state?, {resource uri: contact of the user, None for a non-user}) of a NOTIFY."""
    body = parse_notify(notify)
    return body.full_state, body.contacts()


def list_subscribe(client: SipClient, entries: list[str]) -> dict[str, str | None]:
    """A new list dialog (new Call-ID, as Linphone makes for every change of its list); the
    state of every entry, gathered from the NOTIFYs of its first full state."""
    client.call_id = secrets.token_hex(8)
    body = resource_list(entries)
    headers = [*LIST_HEADERS, ("Accept-Encoding", "deflate")]
    client.request("SUBSCRIBE", RLS, from_uri=f"sip:{ALICE}", to=f"<{RLS}>",
                   headers=headers, body=body)  # fmt: skip
    challenge = client.response("SUBSCRIBE", timeout=20)
    assert challenge is not None and challenge.status == 401
    client.authorized("SUBSCRIBE", RLS, challenge, username="alice", password=PASSWORD,
                      from_uri=f"sip:{ALICE}", to=f"<{RLS}>", headers=headers,
                      body=body)  # fmt: skip
    ok = client.response("SUBSCRIBE", timeout=20)
    assert ok is not None and ok.status == 200, ok and ok.reason
    seen: dict[str, str | None] = {}
    while len(seen) < len(set(entries)):
        notify = client.notify(timeout=20)
        assert notify is not None, f"NOTIFYs stopped after {len(seen)} resources"
        seen.update(parts_of(notify)[1])
    return seen


@pytest.fixture
def tcp_client(edge):
    c = SipClient(edge.address, transport="tcp")
    yield c
    c.close()


def test_a_scraper_mixing_rest_and_subscribes_learns_one_budget_only(edge, tcp_client):
    from app import app

    started = time.time()
    make_account("alice")
    # 100,000 numbers, one user planted every 1,000.
    book = numbers(0, 100_000)
    planted = {n: f"sip:user{i}@{DOMAIN}" for i, n in enumerate(book[::1000])}
    for i, number in enumerate(planted):
        put_account(f"user{i}", phone_number=number)
    found: dict[str, str] = {}
    deferred_rest = 0
    with Client(app) as api:
        for k in range(20):  # requests of 5,000 numbers, SIP and REST in turn
            chunk = book[k * 5000 : (k + 1) * 5000]
            if k % 2 == 0:
                states = list_subscribe(tcp_client, [f"tel:{n}" for n in chunk])
                found.update({u[4:]: c for u, c in states.items() if c})
            else:
                r = post(api, "/v1/contacts/discover", {"phones": chunk}, basic("alice", PASSWORD))
                assert r.status_code == 200
                found.update({m["e164"]: m["sip_uri"] for m in r.json_body["matches"]})
                deferred_rest += len(r.json_body["deferred"])
                if r.json_body["deferred"]:
                    assert int(r.headers["Retry-After"]) > 0
    refill = math.ceil((time.time() - started) * settings.get().discovery_refill_per_day / 86400)
    shown = discovery_budget.show(ALICE)
    answered = shown["known_numbers"]
    assert 5000 <= answered <= 5000 + refill
    assert deferred_rest >= 10 * 5000 - refill
    # Only the users among the numbers paid for were revealed, and each of them correctly.
    assert len(found) <= 5 + refill and all(planted[n] == c for n, c in found.items())
    assert found == {n: planted[n] for n in book[:5000:1000]}


def test_a_book_resubscribed_a_hundred_times_costs_its_size_once(aws):
    # A hundred live dialogs of one account: past SUBSCRIBE_MAX_DIALOGS_PER_ACCOUNT's default.
    edge = EdgeThread(subscribe_max_dialogs_per_account=100)
    make_account("alice")
    book = numbers(500_000, 1000)
    put_account("bob", phone_number=book[-1])
    entries = [f"sip:{n}@{DOMAIN};user=phone" for n in book]
    client = SipClient(edge.address, transport="tcp")
    try:
        for _ in range(100):
            states = list_subscribe(client, entries)
            assert states[entries[-1]] == f"sip:bob@{DOMAIN}"
    finally:
        client.close()
        edge.stop()
    shown = discovery_budget.show(ALICE)
    assert shown["known_numbers"] == 1000
    assert shown["tokens"] == pytest.approx(settings.get().discovery_budget - 1000, abs=1)


@pytest.fixture
def tiny_budget(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DISCOVERY_BUDGET", "3")
    monkeypatch.setenv("DISCOVERY_REFILL_PER_DAY", "0")
    monkeypatch.setenv("DISCOVERY_RECHECK_SECONDS", "1")
    reset_caches()
    clock.offset = 0.0


def test_deferred_numbers_arrive_by_partial_notify_once_tokens_are_granted(tiny_budget, edge):
    make_account("alice")
    book = numbers(700_000, 6)
    put_account("bob", phone_number=book[1])
    put_account("carol", phone_number=book[4])
    put_account("dave", phone_number=book[5])
    entries = [f"sip:{n}@{DOMAIN};user=phone" for n in book]
    client = SipClient(edge.address)
    try:
        states = list_subscribe(client, entries)
        # Three tokens: the first three numbers are answered; the others are not users *yet*.
        assert {u: c for u, c in states.items() if c} == {entries[1]: f"sip:bob@{DOMAIN}"}
        assert client.notify(timeout=2.5) is None  # rechecks find no tokens: nothing sent
        discovery_budget.grant(ALICE, 10)
        notify = client.notify(timeout=10)
        assert notify is not None, "no NOTIFY after the grant"
        full_state, resources = parts_of(notify)
        assert not full_state
        assert {u: c for u, c in resources.items() if c} == {
            entries[4]: f"sip:carol@{DOMAIN}",
            entries[5]: f"sip:dave@{DOMAIN}",
        }
        assert set(resources) <= set(entries[3:])
    finally:
        client.close()
    assert discovery_budget.show(ALICE)["known_numbers"] == 6


def test_single_resource_subscribes_to_numbers_take_tokens_too(tiny_budget, edge):
    make_account("alice")
    book = numbers(800_000, 5)
    for i, n in enumerate(book):
        put_account(f"u{i}", phone_number=n)
    client = SipClient(edge.address)
    try:
        for n in book:
            client.call_id = secrets.token_hex(8)
            uri = f"sip:{n}@{DOMAIN};user=phone"
            client.request("SUBSCRIBE", uri, from_uri=f"sip:{ALICE}", to=f"<{uri}>",
                           headers=[("Event", "presence"), ("Expires", "600")])  # fmt: skip
            challenge = client.response("SUBSCRIBE")
            client.authorized("SUBSCRIBE", uri, challenge, username="alice", password=PASSWORD,
                              from_uri=f"sip:{ALICE}", to=f"<{uri}>",
                              headers=[("Event", "presence"), ("Expires", "600")])  # fmt: skip
            assert client.response("SUBSCRIBE").status == 200
            notify = client.notify()
            assert notify is not None
    finally:
        client.close()
    shown = discovery_budget.show(ALICE)
    assert (shown["known_numbers"], shown["tokens"]) == (3, 0)
    assert accounts.get(ALICE) is not None
