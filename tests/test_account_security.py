"""Attacks on accounts, one by one: each reproduced against the service and shown to fail.

Leaks through the assistant API, hijack of a pending sign-up, code farming (the measured
odds), look-alike usernames, SMS pumping and lockout, PII at rest. Revocation of sessions is
in tests/edge/test_revocation.py (it needs a running edge)."""

from __future__ import annotations

import io
import json

import pytest

from chalicelib import accounts, clock, settings, tables
from chalicelib.accounts import admin, signup
from chalicelib.accounts.rate_limits import DAY
from chalicelib.errors import DomainError
from chalicelib.observability import pseudonym
from chalicelib.presence import resolve
from testkit.sms import last_code, sent_sms
from tests.accounts_support import expire_codes, pass_interval, post
from tests.conftest import advance_clock
from tests.xmlrpc_support import DOMAIN, Answer, call, ha1, method_call, parse_answer

ALICE = "+33611111111"  # has an account, not discoverable
FREE = "+33622222222"  # has none
PASSWORD = "linphone secret"


def s(text: str) -> Answer:
    return Answer(string=text)


@pytest.fixture
def alice(api):
    account = accounts.create(
        "alice", accounts.credentials_from_password("alice", PASSWORD), phone_e164=ALICE
    )
    accounts.update(account.aor, discoverable=False)
    return account


# --- Nothing revealed before proof ------------------------------------------------------------


def test_unauthenticated_calls_answer_the_same_for_taken_and_free(api, alice):
    """Every XML-RPC method that takes no code and no HA1, for alice's number or username
    and for free ones: identical answers."""
    pairs = [
        ("is_phone_number_used", (ALICE, DOMAIN), (FREE, DOMAIN)),
        ("get_phone_number_for_account", ("alice", DOMAIN), ("nobody", DOMAIN)),
        ("is_account_activated", ("alice", DOMAIN, "MD5"), ("nobody", DOMAIN, "MD5")),
        ("recover_phone_account", (ALICE, DOMAIN, "fr"), (FREE, DOMAIN, "fr")),
        (
            "create_phone_account",
            (ALICE, "mallory", "", "x", DOMAIN, "fr", "MD5"),
            (FREE, "mallory", "", "x", DOMAIN, "fr", "MD5"),
        ),
        (
            "link_phone_number_with_account",
            (FREE, "alice", DOMAIN, "fr"),
            ("+33677777777", "nobody", DOMAIN, "fr"),
        ),
    ]
    for method, taken, free in pairs:
        expire_codes()  # earlier codes expire: each pair starts alike
        a, b = call(api, method, *taken), call(api, method, *free)
        if method == "recover_phone_account":  # it echoes the number it was given
            a, b = Answer(string=a.string.replace(ALICE, "N")), Answer(b.string.replace(FREE, "N"))
        assert a == b, method
        assert "alice" not in str(a)


def test_recovery_answers_the_number_not_the_username(api, alice):
    assert call(api, "recover_phone_account", ALICE, DOMAIN, "fr") == s(ALICE)


def test_probing_after_the_sms_budget_is_spent_tells_nothing(api, alice):
    """Before: 200 create_phone_account probes after the SMS budget was spent still told
    taken (ERROR_ALIAS_ALREADY_IN_USE) from free. Now the limits run first."""
    for number in (ALICE, FREE):
        for _ in range(settings.get().sms_per_number_daily):
            pass_interval()
            post(api, "/v1/signup/phone", {"phone": number}, {"X-Forwarded-For": "x"})
    answers = {
        number: {
            call(api, "create_phone_account", number, "mallory", "", "x", DOMAIN, "fr", "MD5")
            for _ in range(20)
        }
        for number in (ALICE, FREE)
    }
    assert answers[ALICE] == answers[FREE] == {s("ERROR_MAX_SMS_EXCEEDED")}


def test_rest_sign_up_request_is_the_same_for_a_taken_username(api, alice):
    taken = post(api, "/v1/signup/phone", {"phone": FREE, "username": "alice"})
    free = post(api, "/v1/signup/phone", {"phone": "+33633333333", "username": "zed"})
    assert (
        (taken.status_code, taken.json_body)
        == (free.status_code, free.json_body)
        == (
            202,
            {"expires_in": 600},
        )
    )


# --- One requester per pending code -----------------------------------------------------------


def test_a_later_requester_cannot_replace_a_pending_sign_up(api):
    """Before: an attacker asking 61 s after the victim with its own HA1 got the account
    created with the attacker's HA1, handed to the victim's app. Now its request is refused
    and sends nothing; the victim's activation answers the victim's HA1."""
    victim = ha1("SHA-256", FREE, "victim pw")
    attacker = ha1("SHA-256", FREE, "attacker pw")
    args = (FREE, FREE, victim, "x", DOMAIN, "fr", "SHA-256")
    assert call(api, "create_phone_account", *args) == s("OK")
    code = last_code(FREE)
    pass_interval()
    sms = len(sent_sms())
    hijack = (FREE, FREE, attacker, "x", DOMAIN, "fr", "SHA-256")
    assert call(api, "create_phone_account", *hijack) == s("ERROR_MAX_SMS_EXCEEDED")
    assert len(sent_sms()) == sms
    assert call(api, "activate_phone_account", FREE, FREE, code, DOMAIN, "SHA-256") == s(victim)
    assert accounts.get_by_username(FREE).ha1_sha256 == victim
    # The same requester may ask again (its SMS did not arrive): same credentials, new code.
    expire_codes()
    other = "+33644444444"
    mine = (other, other, victim, "x", DOMAIN, "fr", "SHA-256")
    assert call(api, "create_phone_account", *mine) == s("OK")
    pass_interval()
    assert call(api, "create_phone_account", *mine) == s("OK")


def test_rest_pending_sign_up_belongs_to_its_requester(api):
    assert post(api, "/v1/signup/phone", {"phone": FREE, "username": "victim"}).status_code == 202
    pass_interval()
    r = post(api, "/v1/signup/phone", {"phone": FREE, "username": "mallory"})
    assert r.status_code == 429 and r.headers["Retry-After"]
    advance_clock(settings.get().code_ttl_seconds)  # expired: anyone may ask
    assert post(api, "/v1/signup/phone", {"phone": FREE, "username": "mallory"}).status_code == 202


def test_wrong_username_or_algorithm_costs_an_attempt_and_tells_nothing(api):
    key = ha1("MD5", "erin", PASSWORD)
    call(api, "create_phone_account", FREE, "erin", key, "x", DOMAIN, "fr", "MD5")
    code = last_code(FREE)
    for username, algo in (("mallory", "MD5"), ("erin", "SHA-256")):
        answer = call(api, "activate_phone_account", FREE, username, code, DOMAIN, algo)
        assert answer == s("ERROR_KEY_DOESNT_MATCH")
    # The same answer as a wrong code when nothing at all is pending.
    assert call(api, "activate_phone_account", "+33655555555", "erin", code, DOMAIN, "MD5") == s(
        "ERROR_KEY_DOESNT_MATCH"
    )
    item = tables.table(tables.VERIFICATION_CODES).scan()["Items"][0]
    assert int(item["attempts"]) == 2


# --- Codes that cannot be farmed ---------------------------------------------------------------


def attack(days: int, number: str) -> tuple[list[int], int]:
    """A distributed attacker (a new source address per request) asks codes for `number` and
    answers each with wrong guesses, for `days` days under the default settings. Answers
    (when each guess the service checked was made, SMS paid for)."""
    checked: list[int] = []
    paid = ip = 0
    end = clock.now() + days * 86400
    while clock.now() < end:
        ip += 1
        try:
            signup.request_code(number, source_ip=f"198.51.{ip // 250}.{ip % 250}")
            paid += 1
        except DomainError as exc:
            assert exc.code == "rate_limited", exc.code
            advance_clock(
                max(settings.get().sms_per_number_interval + 1, int(exc.headers["Retry-After"]))
            )
            continue
        code = last_code(number)
        for k in range(1, 100):
            guess = f"{(int(code) + k) % 10000:04d}"
            try:
                signup.confirm(number, guess, password="attacker pw")
            except DomainError as exc:
                if exc.code in {"code_mismatch", "code_expired"}:
                    checked.append(clock.now_int())  # the windows' resolution: a second
                if exc.code != "code_mismatch":
                    break  # dead after its 5th wrong answer, or the number's budget is spent
        pass_interval()
    return checked, paid


def test_guessing_odds_per_number_per_month(api, capsys, frozen_clock):
    """Before: 5 tries per code, 3 codes a day: 15 guesses a day per number (1 in 667 a day).
    Now at most CODE_FAILURES_PER_NUMBER wrong answers in any 30 days, across codes."""
    checked, paid = attack(90, FREE)
    month = 30 * 86400
    worst = max(sum(1 for t in checked if start <= t < start + month) for start in checked)
    assert worst <= settings.get().code_failures_per_number
    odds = worst / 10 ** settings.get().code_length
    assert odds < 1 / 1000
    with capsys.disabled():
        print(
            f"\n90 days: {len(checked)} guesses checked ({worst} in the worst 30 days), {paid} SMS;"
            f" odds per number per 30 days 1 in {round(1 / odds):,}"
        )


def test_no_code_for_a_number_whose_failure_budget_is_spent(api):
    signup.request_code(FREE, source_ip="203.0.113.1")
    code = last_code(FREE)
    for k in range(1, settings.get().code_failures_per_number + 1):
        if k % settings.get().code_max_attempts == 0:
            pass_interval()
            signup.request_code(FREE, source_ip=f"203.0.113.{k}")
            code = last_code(FREE)
        with pytest.raises(DomainError):
            signup.confirm(FREE, f"{(int(code) + k) % 10000:04d}", password="attacker pw")
    advance_clock(DAY)
    with pytest.raises(DomainError) as e:
        signup.request_code(FREE, source_ip="203.0.113.99")
    assert e.value.code == "rate_limited" and "wrong codes" in e.value.message
    assert int(e.value.headers["Retry-After"]) > 28 * 86400


# --- One identity per name -------------------------------------------------------------------


def test_look_alike_usernames_are_one_identity(api):
    bob = admin.create_account("Bob", password="bob's password")
    with pytest.raises(DomainError) as e:
        accounts.create("bob", accounts.credentials_from_password("bob", "someone else"))
    assert e.value.code == "username_taken"
    # Lookups fold the same way: sip:bob@ and sip:BOB@ reach Bob, nobody else.
    assert accounts.get_by_username("bob") == bob == accounts.get_by_username("BOB")
    assert accounts.authenticate_password("Bob", "bob's password") is not None
    found = resolve.resolve(
        [f"sip:bob@{DOMAIN}", f"sip:BoB@{DOMAIN}"], subscriber=f"x@{DOMAIN}", region="FR"
    )[0]
    assert {r.contact for r in found} == {bob.sip_uri}


def test_an_import_that_collides_is_refused_with_the_colliding_line(api):
    admin.create_account("Carol", password="carol password")
    out = io.StringIO()
    rows = [
        {"username": "Dave", "password": "dave password"},
        {"username": "dave", "password": "other password"},
        {"username": "CAROL", "password": "carol password"},
    ]
    result = admin.import_csv(rows, out=out)
    assert (result.created, result.failed) == (1, 2)
    report = out.getvalue()
    assert "line 3: 'dave': username_taken: the same username as line 2 ('Dave')" in report
    assert "line 4: 'CAROL': username_taken" in report and "'Carol'" in report


# --- SMS only where it belongs ----------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    ["+33899123456", "+447012345678", "+33939123456", "+33810123456", "+447623456789"],
    ids=["FR premium", "UK 070 personal", "FR VoIP", "FR shared cost", "UK pager"],
)
def test_only_mobile_numbers_get_codes(api, number):
    r = post(api, "/v1/signup/phone", {"phone": number})
    assert (r.status_code, r.json_body["error"]["code"]) == (403, "sms_not_allowed")
    assert call(api, "recover_phone_account", number, DOMAIN, "fr") == s("ERROR_CANNOT_SEND_SMS")
    assert sent_sms() == []


def test_no_cross_site_posts(api):
    body = json.dumps({"phone": FREE})
    form = "application/x-www-form-urlencoded"
    for headers in ({}, {"Content-Type": "text/plain"}, {"Content-Type": form}):
        r = api.http.post("/v1/signup/phone", headers=headers, body=body)
        assert r.status_code == 415, headers
    xml = method_call("recover_phone_account", FREE, DOMAIN, "fr")
    for headers in ({}, {"Content-Type": "text/plain"}):
        r = api.http.post("/wizard.php", headers=headers, body=xml)
        assert parse_answer(r.body).fault is not None
    assert sent_sms() == []


def test_link_requests_cannot_spam_a_number_or_lock_out_its_recovery(api, alice):
    accounts.create("frank", accounts.credentials_from_password("frank", PASSWORD))
    answers = []
    for _ in range(10):
        pass_interval()
        answers.append(call(api, "link_phone_number_with_account", ALICE, "frank", DOMAIN, "fr"))
    sent = [n for n, _ in sent_sms() if n == ALICE]
    assert len(sent) <= settings.get().link_sms_per_number_daily
    assert s("ERROR_MAX_SMS_EXCEEDED") in answers
    # The owner's recovery budget is intact.
    expire_codes()
    assert call(api, "recover_phone_account", ALICE, DOMAIN, "fr") == s(ALICE)
    assert sent_sms()[-1][0] == ALICE


def test_sms_per_destination_prefix(api, monkeypatch):
    monkeypatch.setenv("SMS_PER_PREFIX_DAILY", "3")
    settings.get.cache_clear()
    block = [f"+336123{i:05d}" for i in range(0, 5)]  # one block of 10,000 numbers
    codes = [post(api, "/v1/signup/phone", {"phone": n}).status_code for n in block]
    assert codes == [202, 202, 202, 429, 429]
    assert post(api, "/v1/signup/phone", {"phone": "+33698765432"}).status_code == 202


# --- No PII at rest ---------------------------------------------------------------------------


def test_logs_carry_pseudonyms_and_pending_payloads_hold_only_an_ha1(api, log_records):
    key = ha1("SHA-256", FREE, PASSWORD)
    call(api, "create_phone_account", FREE, FREE, key, "x", DOMAIN, "fr", "SHA-256")
    item = tables.table(tables.VERIFICATION_CODES).scan()["Items"][0]
    assert json.loads(item["payload"]) == {"ha1": key}
    call(api, "activate_phone_account", FREE, FREE, "0000", DOMAIN, "SHA-256")
    code = last_code(FREE)
    call(api, "activate_phone_account", FREE, FREE, code, DOMAIN, "SHA-256")
    expire_codes()
    call(api, "create_phone_account", FREE, "taken", "", "x", DOMAIN, "fr", "MD5")
    item = tables.table(tables.VERIFICATION_CODES).scan()["Items"][0]
    assert "payload" not in item  # no HA1 given: nothing kept (a password is made later)
    text = "\n".join(log_records)
    assert FREE not in text and FREE[1:] not in text and FREE[-9:] not in text
    assert pseudonym(FREE) in text
    used = [i for i in tables.table(tables.VERIFICATION_CODES).scan()["Items"] if "used_at" in i]
    assert all("payload" not in i for i in used)
