"""Verification codes: format, HMAC-only storage, binding, lifetime, wrong tries, replacement,
single use and replay of the answer."""

from __future__ import annotations

import re
import threading

import pytest

from chalicelib import settings, tables
from chalicelib.accounts import verification
from chalicelib.errors import DomainError
from testkit.sms import last_code, sent_sms
from tests.accounts_support import expire_codes, pass_interval
from tests.conftest import advance_clock

A = "+33612345678"
FP = "fingerprint-1"


def send(subject: str | None = None, e164: str = A, purpose: str = verification.SIGNUP) -> str:
    verification.send(purpose, e164, e164, subject, source_ip="192.0.2.1", owner="test")
    return last_code(e164)


def consume(code: object, **kw):
    kw.setdefault("fingerprint", FP)
    return verification.consume(verification.SIGNUP, A, code, e164=A, **kw)


def code_item() -> dict:
    table = tables.table(tables.VERIFICATION_CODES)
    items = table.scan()["Items"]
    assert len(items) == 1
    return items[0]


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10000:04d}"


def test_code_is_4_digits_sent_as_sms_and_stored_only_as_hmac(aws):
    code = send("alice")
    assert re.fullmatch(r"\d{4}", code)
    number, text = sent_sms()[-1]
    assert number == A and text == f"Your verification code is {code}"
    item = code_item()
    assert code not in {str(v) for v in item.values()}
    assert item["code_id"].startswith("signup:") and A not in item["code_id"]
    assert int(item["expires_at"]) - int(item["created_at"]) == settings.get().code_ttl_seconds
    assert item["subject"] == "alice"


def test_code_length_and_template_are_configurable(aws, monkeypatch):
    monkeypatch.setenv("CODE_LENGTH", "6")
    monkeypatch.setenv("SMS_TEMPLATE", "{code} is your code ({minutes} min) {x}")
    settings.get.cache_clear()
    send()
    text = sent_sms()[-1][1]
    assert re.fullmatch(r"\d{6} is your code \(10 min\) \{x\}", text)
    claim = consume(text[:6])
    assert claim.phone == A and claim.replay is None


def test_right_code_claims_once_and_binds_its_subject(aws):
    code = send("alice")
    claim = consume(code)
    assert claim.subject == "alice" and claim.purpose == "signup"


def test_no_pending_code_is_404(aws):
    with pytest.raises(DomainError) as e:
        consume("1234")
    assert e.value.code == "code_not_found" and e.value.http_status == 404


def test_code_of_another_purpose_does_not_work(aws):
    code = send(purpose=verification.LINK)
    with pytest.raises(DomainError) as e:
        consume(code)
    assert e.value.code == "code_not_found"


def test_link_code_is_bound_to_its_subject(aws):
    verification.send(
        verification.LINK, "alice@example.org", A, "alice#1", source_ip="x", owner="test"
    )
    code = last_code(A)
    with pytest.raises(DomainError) as e:
        verification.consume(
            verification.LINK, "alice@example.org", code, subject="alice#2", fingerprint=FP
        )
    # The subject is part of the answer: another one is a wrong answer, and costs a try.
    assert e.value.code == "code_mismatch"
    claim = verification.consume(
        verification.LINK, "alice@example.org", code, subject="alice#1", fingerprint=FP
    )
    assert claim.phone == A


def test_code_expires_after_ten_minutes(aws):
    code = send()
    expire_codes()
    with pytest.raises(DomainError) as e:
        consume(code)
    assert e.value.code == "code_expired" and e.value.http_status == 410


def test_code_still_valid_just_before_expiry(aws):
    code = send()
    advance_clock(settings.get().code_ttl_seconds - 10)
    assert consume(code).replay is None


def test_five_wrong_tries_kill_the_code(aws):
    code = send()
    for left in (4, 3, 2, 1):
        with pytest.raises(DomainError) as e:
            consume(wrong(code))
        assert e.value.code == "code_mismatch" and f"{left} tries left" in e.value.message
    with pytest.raises(DomainError) as e:
        consume(wrong(code))
    assert e.value.code == "code_expired" and e.value.http_status == 410
    with pytest.raises(DomainError) as e:
        consume(code)  # even the right one: the code is dead
    assert e.value.code == "code_expired"


def test_malformed_codes_do_not_use_a_try(aws):
    code = send()
    for bad in ["12", "12345", "abcd", 1234, None, "١٢٣٤"]:
        with pytest.raises(DomainError) as e:
            consume(bad)
        assert e.value.code == "invalid_field"
    assert int(code_item()["attempts"]) == 0
    consume(code)


def test_a_new_request_replaces_the_old_code(aws):
    old = send()
    pass_interval()
    new = send()
    if old != new:
        with pytest.raises(DomainError) as e:
            consume(old)
        assert e.value.code == "code_mismatch"
    assert consume(new).replay is None
    assert int(code_item()["attempts"]) <= 1


def test_retry_with_same_fingerprint_replays_the_answer(aws):
    code = send()
    claim = consume(code)
    verification.complete(claim, {"answer": 1})
    again = consume(code)
    assert again.replay == {"answer": 1}
    with pytest.raises(DomainError) as e:
        consume(code, fingerprint="someone else")
    assert e.value.code == "conflict" and e.value.http_status == 409
    with pytest.raises(DomainError) as e:
        consume(wrong(code))
    assert e.value.code == "code_not_found"  # a used code says nothing more
    expire_codes()
    with pytest.raises(DomainError) as e:
        consume(code)
    assert e.value.code == "code_expired"


def test_in_flight_use_is_a_conflict_and_release_makes_it_usable(aws):
    code = send()
    claim = consume(code)
    with pytest.raises(DomainError) as e:
        consume(code)  # the first request has not answered yet
    assert e.value.code == "conflict"
    verification.release(claim)
    assert consume(code).replay is None


@pytest.mark.usefixtures("atomic_moto")
def test_parallel_guesses_never_exceed_the_tries():
    code = send()
    guesses = [f"{(int(code) + k) % 10000:04d}" for k in range(1, 21)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(guesses))

    def guess(g: str) -> None:
        barrier.wait()
        try:
            consume(g)
            outcomes.append("ok")
        except DomainError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=guess, args=(g,)) for g in guesses]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert "ok" not in outcomes
    assert outcomes.count("code_mismatch") == 4  # 5th wrong answer says the code is dead
    assert int(code_item()["attempts"]) == 5
    with pytest.raises(DomainError) as e:
        consume(code)
    assert e.value.code == "code_expired"
