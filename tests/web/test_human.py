"""The proof of work a page asks before validating an app's account request (web.human)."""

from __future__ import annotations

import base64
import json

import altcha
import pytest

from chalicelib.web import human
from tests.conftest import reset_caches


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch):
    yield
    monkeypatch.undo()
    reset_caches()  # the settings a test changed do not outlive it


def solved(challenge: dict, number: int | None = None) -> str:
    if number is None:
        found = altcha.solve_challenge_v1(
            challenge["challenge"],
            challenge["salt"],
            challenge["algorithm"],
            challenge["maxNumber"],
        )
        assert found is not None
        number = found.number
    answer = {k: challenge[k] for k in ("algorithm", "challenge", "salt", "signature")}
    return base64.b64encode(json.dumps({**answer, "number": number}).encode()).decode()


def test_a_solved_challenge_proves_its_subject_only():
    challenge = human.challenge("request-token-1")
    payload = solved(challenge)
    assert human.proven(payload, "request-token-1")
    assert not human.proven(payload, "request-token-2")


def test_wrong_numbers_forged_salts_and_garbage_prove_nothing():
    challenge = human.challenge("t")
    payload = json.loads(base64.b64decode(solved(challenge)))
    assert not human.proven(solved(challenge, payload["number"] + 1), "t")
    forged = {**payload, "salt": payload["salt"].replace("for=", "for=0")}
    assert not human.proven(base64.b64encode(json.dumps(forged).encode()).decode(), "t")
    for junk in (None, "", "not base64!", base64.b64encode(b"[1]").decode(), "A" * 5000):
        assert not human.proven(junk, "t")


def test_an_expired_challenge_proves_nothing(monkeypatch):
    monkeypatch.setenv("WEB_HUMAN_CHECK_TTL", "-1")
    reset_caches()
    assert not human.proven(solved(human.challenge("t")), "t")


@pytest.mark.parametrize("maximum", [1000, 100000])
def test_the_work_asked_follows_the_setting(monkeypatch, maximum):
    monkeypatch.setenv("WEB_HUMAN_CHECK_MAX_NUMBER", str(maximum))
    reset_caches()
    assert human.challenge("t")["maxNumber"] == maximum
