"""Concurrent confirms: one winner and a 409 for the other, for one username and one number."""

from __future__ import annotations

import threading

import pytest

from chalicelib import accounts
from chalicelib.accounts import signup
from chalicelib.errors import DomainError
from testkit.sms import last_code
from tests.accounts_support import PASSWORD

A = "+33612345678"
B = "+33698765432"


def run_together(*calls):
    """Run the calls in threads; answer each one's result or DomainError."""
    results: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except DomainError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


@pytest.mark.usefixtures("atomic_moto")
def test_two_numbers_confirming_the_same_username(monkeypatch):
    signup.request_code(A, username="alice", source_ip="192.0.2.1")
    signup.request_code(B, username="alice", source_ip="192.0.2.2")
    code_a, code_b = last_code(A), last_code(B)
    # Both requests get past their code and reach the account creation before either writes.
    barrier = threading.Barrier(2, timeout=10)
    real_create = accounts.create

    def create(*args, **kwargs):
        barrier.wait()
        return real_create(*args, **kwargs)

    monkeypatch.setattr(accounts, "create", create)
    results = run_together(
        lambda: signup.confirm(A, code_a, password=PASSWORD),
        lambda: signup.confirm(B, code_b, password=PASSWORD),
    )
    wins = [r for r in results if isinstance(r, signup.SignupResult)]
    losses = [r for r in results if isinstance(r, DomainError)]
    assert len(wins) == 1 and len(losses) == 1
    assert wins[0].username == "alice" and wins[0].http_status == 201
    assert losses[0].code == "username_taken" and losses[0].http_status == 409
    loser = B if wins[0].phone == A else A
    assert accounts.find_by_phone(loser) is None
    assert accounts.get_by_username("alice").phone == wins[0].phone


@pytest.mark.usefixtures("atomic_moto")
def test_two_confirms_of_one_number_at_once(monkeypatch):
    signup.request_code(A, source_ip="192.0.2.1")
    code = last_code(A)
    # The request that uses the code holds on until the other one has answered.
    other_answered = threading.Event()
    real = signup._create_or_recover

    def slow(*args, **kwargs):
        other_answered.wait(timeout=10)
        return real(*args, **kwargs)

    monkeypatch.setattr(signup, "_create_or_recover", slow)

    def attempt(password: str):
        try:
            return signup.confirm(A, code, password=password)
        except DomainError:
            other_answered.set()
            raise

    results = run_together(lambda: attempt(PASSWORD), lambda: attempt(PASSWORD))
    wins = [r for r in results if isinstance(r, signup.SignupResult)]
    losses = [r for r in results if isinstance(r, DomainError)]
    assert len(wins) == 1 and len(losses) == 1
    assert losses[0].code == "conflict" and losses[0].http_status == 409
    assert accounts.find_by_phone(A).username == A
    # Once the winner answered, the same retry is answered like it.
    assert signup.confirm(A, code, password=PASSWORD) == wins[0]


@pytest.mark.usefixtures("atomic_moto")
def test_signup_and_link_racing_for_one_number(monkeypatch):
    """A sign-up confirm that loses the number to a concurrent link recovers that account."""
    accounts.create("bob", accounts.credentials_from_password("bob", PASSWORD))
    signup.request_code(A, source_ip="192.0.2.1")
    code = last_code(A)
    real_create = accounts.create

    def create_after_link(*args, **kwargs):
        accounts.link_phone("bob@example.org", A)  # lands between the lookup and the create
        monkeypatch.setattr(accounts, "create", real_create)
        return real_create(*args, **kwargs)

    monkeypatch.setattr(accounts, "create", create_after_link)
    result = signup.confirm(A, code, password="a new password")
    assert result.recovered and result.username == "bob"
