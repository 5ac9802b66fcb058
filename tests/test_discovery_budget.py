"""Discovery budgets: the token bucket, the known numbers, REST's deferred answer and
the operator's `budget` command, on moto."""

from __future__ import annotations

import json

import pytest

from chalicelib import clock, tables
from chalicelib.accounts import admin, discovery_budget
from chalicelib.aws import client
from tests.accounts_support import basic, post
from tests.conftest import advance_clock, reset_caches
from tests.presence_helpers import put_account

ALICE = "alice@example.org"


def numbers(start: int, count: int) -> list[str]:
    return [f"+3361{i:07d}" for i in range(start, start + count)]


@pytest.fixture
def small_budget(monkeypatch: pytest.MonkeyPatch, aws: None):
    monkeypatch.setenv("DISCOVERY_BUDGET", "10")
    monkeypatch.setenv("DISCOVERY_REFILL_PER_DAY", "24")  # one token an hour
    reset_caches()
    clock.offset = 0.0
    yield
    clock.offset = 0.0


def test_new_numbers_take_tokens_known_ones_are_free(small_budget):
    first = discovery_budget.charge(ALICE, numbers(0, 6))
    assert (first.charged, first.deferred, first.tokens) == (6, [], 4)
    again = discovery_budget.charge(ALICE, numbers(0, 6) + numbers(0, 6))
    assert (again.charged, again.deferred, again.tokens) == (0, [], 4)
    assert again.allowed == frozenset(numbers(0, 6))


def test_past_the_budget_numbers_are_deferred_in_order_with_retry_after(small_budget):
    discovery_budget.charge(ALICE, numbers(0, 8))
    mixed = numbers(100, 5) + numbers(0, 3)
    result = discovery_budget.charge(ALICE, mixed)
    # Two tokens left: the first two new numbers; the known ones are answered whatever their place.
    assert result.allowed == frozenset(numbers(100, 2) + numbers(0, 3))
    assert result.deferred == numbers(102, 3)
    assert result.retry_after == 3 * 3600  # three tokens at one an hour
    assert result.tokens == 0


def test_refill_over_time_and_never_past_the_capacity(small_budget):
    discovery_budget.charge(ALICE, numbers(0, 10))
    advance_clock(2 * 3600 + 5)
    assert discovery_budget.show(ALICE)["tokens"] == pytest.approx(2, abs=0.01)
    result = discovery_budget.charge(ALICE, numbers(100, 3))
    assert (result.charged, result.deferred) == (2, numbers(102, 1))
    advance_clock(30 * 86400)
    assert discovery_budget.show(ALICE)["tokens"] == 10


def test_budgets_are_per_account(small_budget):
    discovery_budget.charge(ALICE, numbers(0, 10))
    assert discovery_budget.charge("bob@example.org", numbers(0, 10)).charged == 10


def test_known_numbers_are_bounded(small_budget, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DISCOVERY_KNOWN_MAX", "4")
    reset_caches()
    discovery_budget.grant(ALICE, 100)
    for start in range(0, 40, 8):
        discovery_budget.charge(ALICE, numbers(start, 8))
    item = client("dynamodb").get_item(
        TableName=tables.DISCOVERY_BUDGETS.name(), Key={"aor": {"S": ALICE}}
    )["Item"]
    assert len(item["known"]["B"]) == 4 * discovery_budget.HASH_BYTES
    # The newest are remembered (free); an old one forgotten costs a token again.
    assert discovery_budget.charge(ALICE, numbers(36, 4)).charged == 0
    assert discovery_budget.charge(ALICE, numbers(0, 1)).charged == 1


def test_grant_lets_deferred_numbers_through(small_budget):
    discovery_budget.charge(ALICE, numbers(0, 10))
    assert discovery_budget.charge(ALICE, numbers(100, 5)).deferred == numbers(100, 5)
    assert discovery_budget.grant(ALICE, 5)["tokens"] == 5
    assert discovery_budget.charge(ALICE, numbers(100, 5)).deferred == []


def test_admin_budget_show_and_grant(small_budget, capsys: pytest.CaptureFixture[str]):
    put_account("alice")
    discovery_budget.charge(ALICE, numbers(0, 10))
    assert admin.main(["budget", "show", "alice"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["tokens"], shown["known_numbers"], shown["capacity"]) == (0, 10, 10)
    assert admin.main(["budget", "grant", "alice", "25"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == 25  # above the capacity: granted
    assert admin.main(["budget", "grant", "nobody", "5"]) == 1
    assert "not_found" in capsys.readouterr().err
    assert admin.main(["budget", "grant", "alice", "0"]) == 1


def test_rest_discover_answers_what_it_can_afford_and_defers_the_rest(small_budget, api):
    from chalicelib import accounts

    accounts.create("alice", accounts.credentials_from_password("alice", "correct horse"))
    planted = numbers(0, 14)[3::4]  # positions 3, 7, 11: users
    for i, number in enumerate(planted):
        put_account(f"user{i}", phone_number=number)
    asked = ["not a number", *numbers(0, 14)]
    r = post(api, "/v1/contacts/discover", {"phones": asked}, basic("alice"))
    assert r.status_code == 200
    assert [m["e164"] for m in r.json_body["matches"]] == planted[:2]  # within the first 10
    assert r.json_body["deferred"] == numbers(10, 4)
    assert int(r.headers["Retry-After"]) == 4 * 3600
    # The same book again: free, the same answer; nothing false ever reported.
    again = post(api, "/v1/contacts/discover", {"phones": numbers(0, 10)}, basic("alice"))
    assert [m["e164"] for m in again.json_body["matches"]] == planted[:2]
    assert again.json_body["deferred"] == [] and "Retry-After" not in again.headers
    advance_clock(4 * 3600)
    later = post(api, "/v1/contacts/discover", {"phones": asked}, basic("alice"))
    assert [m["e164"] for m in later.json_body["matches"]] == planted
    assert later.json_body["deferred"] == []
