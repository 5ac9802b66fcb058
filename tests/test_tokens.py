"""Single-use tokens (`accounts.tokens`): stored only as a keyed hash, used once even by
racing requests, answered again only to the request that used them, spent after their tries."""

from __future__ import annotations

import threading

import pytest

from chalicelib import tables
from chalicelib.accounts import tokens
from chalicelib.aws import client
from chalicelib.errors import DomainError
from tests.conftest import advance_clock


def test_the_table_never_holds_a_usable_token(aws):
    token = tokens.issue(tokens.CREATION, {"device": "d"}, 60)
    items = client("dynamodb").scan(TableName=tables.TOKENS.name())["Items"]
    assert len(items) == 1 and token.value not in str(items)


def test_racing_requests_use_a_token_once(atomic_moto):
    token = tokens.issue(tokens.CREATION, {}, 60)
    won, lost = [], []

    def attempt(n: int) -> None:
        try:
            won.append(tokens.use(tokens.CREATION, token.value, fingerprint=f"request {n}"))
        except DomainError:
            lost.append(n)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(won), len(lost)) == (1, 7)


def test_a_used_token_answers_again_only_its_own_request(aws):
    token = tokens.issue(tokens.PROVISIONING, {"aor": "a@x"}, 60)
    used = tokens.use(tokens.PROVISIONING, token.value, fingerprint="me", replay_window=30)
    assert used.data == {"aor": "a@x"} and used.replay is None
    again = tokens.use(tokens.PROVISIONING, token.value, fingerprint="me", replay_window=30)
    assert again.data == used.data
    with pytest.raises(DomainError) as refused:
        tokens.use(tokens.PROVISIONING, token.value, fingerprint="someone else", replay_window=30)
    assert refused.value.code == "token_invalid"
    advance_clock(31)
    with pytest.raises(DomainError):
        tokens.use(tokens.PROVISIONING, token.value, fingerprint="me", replay_window=30)
    tokens.complete(used, {"answer": 1})
    assert tokens.use(tokens.PROVISIONING, token.value, fingerprint="me").replay == {"answer": 1}


def test_refused_uses_spend_the_tries_and_transient_ones_do_not(aws):
    token = tokens.issue(tokens.CREATION, {}, 60, max_tries=2)
    for _ in range(5):  # a transient failure gives the token back untouched
        tokens.release(tokens.use(tokens.CREATION, token.value, fingerprint="a"))
    tokens.release(tokens.use(tokens.CREATION, token.value, fingerprint="a"), refused=True)
    assert tokens.peek(tokens.CREATION, token.value) == {}
    tokens.release(tokens.use(tokens.CREATION, token.value, fingerprint="b"), refused=True)
    assert tokens.peek(tokens.CREATION, token.value) is None
    with pytest.raises(DomainError):
        tokens.use(tokens.CREATION, token.value, fingerprint="c")


@pytest.mark.parametrize("value", ["", "x" * 65, "a b", "../x", None, 7, "é"])
def test_malformed_values_are_looked_up_nowhere(aws, value):
    assert not tokens.well_formed(value)
    assert tokens.peek(tokens.REQUEST, value) is None
    with pytest.raises(DomainError):
        tokens.use(tokens.REQUEST, value, fingerprint="x")


def test_a_derived_token_issued_twice_is_one_token(aws):
    first = tokens.issue(tokens.CREATION, {}, 60, value="derived-value")
    advance_clock(5)
    second = tokens.issue(tokens.CREATION, {}, 60, value="derived-value")
    assert (second.value, second.expires_at) == (first.value, first.expires_at)
