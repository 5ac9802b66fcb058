"""The Linphone assistant's methods over HTTP (chalice.test.Client on moto): every captured SDK
request replayed and its answer checked; create → activate → REGISTER at the SIP edge; link →
activate link; recovery; the service's own rules (codes bound to number and account, tries,
used codes, SMS and lookup limits, nothing told before proof, domain)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from chalicelib import accounts, digest, settings
from chalicelib.accounts import sms, verification
from chalicelib.accounts.rate_limits import HOUR
from chalicelib.errors import DomainError
from testkit.sip_client import SipClient
from testkit.sms import last_code, sent_sms
from tests.accounts_support import expire_codes, pass_interval, post
from tests.conftest import advance_clock
from tests.edge.conftest import EdgeThread
from tests.xmlrpc_support import (
    CAPTURED_CODE,
    CAPTURED_HA1,
    DOMAIN,
    PHONE,
    Answer,
    call,
    capture,
    capture_names,
    ha1,
    parse_answer,
    post_xml,
)

OTHER = "+33622222222"
PASSWORD = "linphone secret"


@pytest.fixture
def fixed_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every SMS carries the code of the captures, so they replay verbatim."""
    monkeypatch.setattr(verification, "new_code", lambda: CAPTURED_CODE)


@pytest.fixture
def edge(api) -> Iterator[EdgeThread]:
    running = EdgeThread()
    yield running
    running.stop()


def replay(api, name: str, domain: str = DOMAIN) -> Answer:
    cap = capture(name, domain)
    return parse_answer(post_xml(api, cap.body, cap.path, **cap.headers).body)


def s(text: str) -> Answer:
    return Answer(string=text)


def register(
    edge: EdgeThread,
    username: str,
    *,
    password: str | None = None,
    ha1_hex: str | None = None,
    algorithm: str = "SHA-256",
) -> int:
    """REGISTER at the edge answering its digest challenge; the final status."""
    client = SipClient(edge.address)
    try:
        aor = f"sip:{username}@{DOMAIN}"
        client.request("REGISTER", f"sip:{DOMAIN}", from_uri=aor, headers=[("Expires", "600")])
        challenge = client.response("REGISTER")
        assert challenge.status == 401
        for value in challenge.headers.get_all("WWW-Authenticate"):
            params = digest.parse_params(value)
            if params.get("algorithm", "MD5").upper() == algorithm:
                break
        else:
            raise AssertionError(f"no {algorithm} challenge")
        key = ha1_hex or digest.ha1(algorithm, username, params["realm"], password or "")
        uri, cnonce, nc = f"sip:{DOMAIN}", secrets.token_hex(4), "00000001"
        response = digest.expected_response(
            algorithm, key, "REGISTER", uri, params["nonce"], qop="auth", nc=nc, cnonce=cnonce
        )
        auth = (
            f'Digest username="{username}", realm="{params["realm"]}", nonce="{params["nonce"]}",'
            f' uri="{uri}", response="{response}", algorithm={algorithm}, qop=auth, nc={nc},'
            f' cnonce="{cnonce}"'
        )
        client.request(
            "REGISTER",
            uri,
            from_uri=aor,
            headers=[("Expires", "600"), ("Authorization", auth)],
        )
        return client.response("REGISTER").status
    finally:
        client.close()


# --- The captured requests, replayed verbatim -------------------------------------------------


def test_captures_replayed_in_sign_up_order(api, fixed_code):
    assert replay(api, "is_phone_number_used") == s("ERROR_ALIAS_DOESNT_EXIST")
    assert replay(api, "activate_phone_account") == s("ERROR_KEY_DOESNT_MATCH")  # none pending
    assert replay(api, "create_phone_account") == s("OK")
    assert sent_sms()[-1][0] == PHONE and CAPTURED_CODE in sent_sms()[-1][1]
    assert replay(api, "is_account_activated") == s("OK")  # the only answer it has
    assert replay(api, "activate_phone_account") == s(CAPTURED_HA1)
    account = accounts.get_by_username("bob")
    assert (account.phone, account.ha1_sha256, account.ha1_md5) == (PHONE, CAPTURED_HA1, None)
    # The same code and request again: the code is gone, and the HA1 is not given twice.
    assert replay(api, "activate_phone_account") == s("ERROR_KEY_DOESNT_MATCH")
    # Nothing unauthenticated tells that bob exists, or which number he has.
    assert replay(api, "is_account_activated") == s("OK")
    assert replay(api, "get_phone_number_for_account") == s("ERROR_ACCOUNT_DOESNT_EXIST")
    assert replay(api, "is_phone_number_used") == s("ERROR_ALIAS_DOESNT_EXIST")
    sms_before = len(sent_sms())
    assert replay(api, "link_phone_number_with_account") == s("OK")
    assert len(sent_sms()) == sms_before  # already bob's: nothing to send, nothing told
    pass_interval()  # the per-number SMS interval
    assert replay(api, "create_phone_account") == s("OK")  # taken: told only after proof
    expire_codes()  # that code expires: recovery may ask its own
    assert replay(api, "recover_phone_account") == s(PHONE)  # the number, never "bob"
    answer = replay(api, "recover_account_from_confirmation_key")
    new = accounts.get_by_username("bob").ha1_sha256
    # New credentials, never the existing HA1.
    assert answer == Answer(struct=[("password", new), ("algorithm", "SHA-256")])
    assert new != CAPTURED_HA1
    assert replay(api, "recover_account_from_confirmation_key") == s("ERROR_KEY_DOESNT_MATCH")


def test_captures_replayed_in_link_order(api, fixed_code):
    accounts.create("bob", accounts.credentials_from_ha1(CAPTURED_HA1, "SHA-256"))
    assert replay(api, "get_phone_number_for_account") == s("ERROR_ACCOUNT_DOESNT_EXIST")
    assert replay(api, "activate_phone_number_link") == s("ERROR_KEY_DOESNT_MATCH")
    assert replay(api, "link_phone_number_with_account") == s("OK")
    assert sent_sms()[-1][0] == PHONE
    assert replay(api, "activate_phone_number_link") == s("OK")
    assert replay(api, "get_phone_number_for_account") == s("ERROR_ACCOUNT_DOESNT_EXIST")
    assert replay(api, "is_phone_number_used") == s("ERROR_ALIAS_DOESNT_EXIST")
    assert accounts.find_by_phone(PHONE).username == "bob"


def test_recover_captures_without_an_account(api, fixed_code):
    # The same answer, and the same SMS, as for a number that has an account.
    assert replay(api, "recover_phone_account") == s(PHONE)
    assert [n for n, _ in sent_sms()] == [PHONE]
    assert replay(api, "recover_account_from_confirmation_key") == s("ERROR_KEY_DOESNT_MATCH")
    assert replay(api, "is_account_activated") == s("OK")
    assert replay(api, "get_phone_number_for_account") == s("ERROR_ACCOUNT_DOESNT_EXIST")
    # Only the number's owner, with the code, learns that it has no account.
    assert call(
        api, "recover_account_from_confirmation_key", PHONE, CAPTURED_CODE, DOMAIN, "SHA-256"
    ) == s("ERROR_ACCOUNT_DOESNT_EXIST")


@pytest.mark.parametrize("name", capture_names())
def test_every_capture_refuses_another_domain(api, fixed_code, name):
    assert replay(api, name, domain="sip.linphone.org") == s("ERROR_DOMAIN_NOT_ALLOWED")
    assert sent_sms() == []


@pytest.mark.parametrize("name", capture_names())
def test_every_capture_is_served_on_v1_xmlrpc_too(api, fixed_code, name):
    cap = capture(name)
    answer = parse_answer(post_xml(api, cap.body, "/v1/xmlrpc").body)
    assert answer.fault is None and answer.string is not None
    if name == "create_phone_account":
        assert answer.string == "OK"


# --- Create → activate → REGISTER at the SIP edge ---------------------------------------------


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_create_activate_then_register_with_the_password(api, edge, algorithm):
    key = ha1(algorithm, "carol", PASSWORD)
    assert call(
        api, "create_phone_account", PHONE, "carol", key, "Unknown", DOMAIN, "fr", algorithm
    ) == s("OK")
    answer = call(
        api, "activate_phone_account", PHONE, "carol", last_code(PHONE), DOMAIN, algorithm
    )
    assert answer == s(key)
    assert register(edge, "carol", password=PASSWORD, algorithm=algorithm) == 200
    assert register(edge, "carol", password="not it", algorithm=algorithm) == 401


def test_username_is_the_number_when_the_app_sets_none(api, edge):
    key = ha1("MD5", PHONE, PASSWORD)
    assert call(
        api, "create_phone_account", PHONE, PHONE, key, "Unknown", DOMAIN, "en", "MD5"
    ) == s("OK")
    assert call(api, "activate_phone_account", PHONE, PHONE, last_code(PHONE), DOMAIN, "MD5") == s(
        key
    )
    assert accounts.find_by_phone(PHONE).username == PHONE
    assert register(edge, PHONE, password=PASSWORD, algorithm="MD5") == 200


def test_no_password_set_gets_a_generated_one_and_its_ha1(api, edge):
    assert call(
        api, "create_phone_account", PHONE, "dave", "", "Unknown", DOMAIN, "fr", "SHA-256"
    ) == s("OK")
    answer = call(api, "activate_phone_account", PHONE, "dave", last_code(PHONE), DOMAIN, "SHA-256")
    account = accounts.get_by_username("dave")
    assert answer == s(account.ha1_sha256) and account.ha1_md5  # both HA1s: a real password
    assert register(edge, "dave", ha1_hex=answer.string, algorithm="SHA-256") == 200


# --- Codes: the service's own rules -----------------------------------------------------------


def test_wrong_codes_count_and_kill_the_code(api):
    key = ha1("MD5", "erin", PASSWORD)
    call(api, "create_phone_account", PHONE, "erin", key, "Unknown", DOMAIN, "fr", "MD5")
    code = last_code(PHONE)
    wrong = f"{(int(code) + 1) % 10000:04d}"
    for malformed in ("12a4", "123", "12345", ""):  # not codes: no try used
        assert call(api, "activate_phone_account", PHONE, "erin", malformed, DOMAIN, "MD5") == s(
            "ERROR_KEY_DOESNT_MATCH"
        )
    for _ in range(settings.get().code_max_attempts):
        assert call(api, "activate_phone_account", PHONE, "erin", wrong, DOMAIN, "MD5") == s(
            "ERROR_KEY_DOESNT_MATCH"
        )
    assert call(api, "activate_phone_account", PHONE, "erin", code, DOMAIN, "MD5") == s(
        "ERROR_KEY_DOESNT_MATCH"
    )
    assert accounts.get_by_username("erin") is None


def test_code_is_bound_to_the_username_it_was_asked_for(api):
    key = ha1("MD5", "erin", PASSWORD)
    call(api, "create_phone_account", PHONE, "erin", key, "Unknown", DOMAIN, "fr", "MD5")
    code = last_code(PHONE)
    # Another username or number is a wrong answer like a wrong code (a try used): it does
    # not tell, for free, that a sign-up is pending.
    assert call(api, "activate_phone_account", PHONE, "mallory", code, DOMAIN, "MD5") == s(
        "ERROR_KEY_DOESNT_MATCH"
    )
    assert call(api, "activate_phone_account", OTHER, "erin", code, DOMAIN, "MD5") == s(
        "ERROR_KEY_DOESNT_MATCH"
    )
    assert call(api, "activate_phone_account", PHONE, "erin", code, DOMAIN, "MD5") == s(key)


def test_activate_in_another_algorithm_than_the_ha1_is_a_wrong_answer(api):
    key = ha1("MD5", "erin", PASSWORD)
    call(api, "create_phone_account", PHONE, "erin", key, "Unknown", DOMAIN, "fr", "MD5")
    code = last_code(PHONE)
    assert call(api, "activate_phone_account", PHONE, "erin", code, DOMAIN, "SHA-256") == s(
        "ERROR_KEY_DOESNT_MATCH"
    )
    assert verification_attempts() == 1
    assert call(api, "activate_phone_account", PHONE, "erin", code, DOMAIN, "MD5") == s(key)


def verification_attempts() -> int:
    from chalicelib import tables

    return int(tables.table(tables.VERIFICATION_CODES).scan()["Items"][0]["attempts"])


def test_a_rest_sign_up_code_does_not_activate_through_the_assistant(api):
    post(api, "/v1/signup/phone", {"phone": PHONE})
    assert call(api, "activate_phone_account", PHONE, PHONE, last_code(PHONE), DOMAIN, "MD5") == s(
        "ERROR_KEY_DOESNT_MATCH"
    )


# --- create_phone_account refusals ------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            (PHONE, "bob", CAPTURED_HA1, "Unknown", DOMAIN, "fr", "SHA-512"),
            "ERROR_ALGO_NOT_SUPPORTED",
        ),
        ((PHONE, "bob", "abc", "Unknown", DOMAIN, "fr", "SHA-256"), "ERROR_INVALID_PARAMETERS"),
        ((PHONE, "bob", CAPTURED_HA1, "Unknown", DOMAIN, "fr", "MD5"), "ERROR_INVALID_PARAMETERS"),
        (("not a number", "bob", "", "Unknown", DOMAIN, "fr", "MD5"), "ERROR_PHONE_ISNT_E164"),
        (("+81312345678", "bob", "", "Unknown", DOMAIN, "ja", "MD5"), "ERROR_CANNOT_SEND_SMS"),
        ((PHONE, "Bob Smith", "", "Unknown", DOMAIN, "fr", "MD5"), "ERROR_USERNAME_INVALID"),
        (
            (PHONE, "bob", "", "Unknown", "sip.linphone.org", "fr", "MD5"),
            "ERROR_DOMAIN_NOT_ALLOWED",
        ),
    ],
)
def test_create_refusals(api, args, expected):
    assert call(api, "create_phone_account", *args) == s(expected)
    assert sent_sms() == []


def test_create_with_a_taken_username_is_told_after_the_code(api):
    accounts.create("bob", accounts.credentials_from_password("bob", PASSWORD))
    assert call(api, "create_phone_account", PHONE, "bob", "", "Unknown", DOMAIN, "fr", "MD5") == s(
        "OK"
    )
    code = last_code(PHONE)
    assert call(api, "activate_phone_account", PHONE, "bob", code, DOMAIN, "MD5") == s(
        "ERROR_ACCOUNT_ALREADY_IN_USE"
    )
    assert accounts.find_by_phone(PHONE) is None


def test_sms_limits_answer_max_sms_exceeded(api):
    args = (PHONE, "bob", "", "Unknown", DOMAIN, "fr", "MD5")
    assert call(api, "create_phone_account", *args) == s("OK")
    assert call(api, "create_phone_account", *args) == s("ERROR_MAX_SMS_EXCEEDED")


def test_sns_failure_answers_cannot_send_sms(api, monkeypatch):
    def fail(e164: str, code: str) -> None:
        raise DomainError("sms_unavailable", "SNS down")

    monkeypatch.setattr(sms, "send_code", fail)
    assert call(api, "create_phone_account", PHONE, "bob", "", "Unknown", DOMAIN, "fr", "MD5") == s(
        "ERROR_CANNOT_SEND_SMS"
    )


# --- The unauthenticated lookups: one answer, after a rate limit -------------------------------


def test_no_sms_methods_are_rate_limited_per_source_ip(api):
    limit = settings.get().xmlrpc_lookups_per_ip_hourly
    numbers = [f"+336{i:08d}" for i in range(10000000, 10000000 + limit + 1)]
    answers = [call(api, "is_phone_number_used", n, DOMAIN).string for n in numbers]
    assert answers[:-1] == ["ERROR_ALIAS_DOESNT_EXIST"] * limit
    assert answers[-1] == "ERROR_MAX_SMS_EXCEEDED"
    # The same limit covers the other methods of this source that send no SMS.
    for method, args in (
        ("get_phone_number_for_account", ("bob", DOMAIN)),
        ("is_account_activated", ("bob", DOMAIN, "MD5")),
        ("recover_account_from_confirmation_key", ("bob", "1234", DOMAIN, "MD5")),
    ):
        assert call(api, method, *args) == s("ERROR_MAX_SMS_EXCEEDED")
    advance_clock(HOUR + 1)
    assert call(api, "is_phone_number_used", PHONE, DOMAIN) == s("ERROR_ALIAS_DOESNT_EXIST")


def test_a_stranger_learns_that_a_number_is_taken_only_by_proving_it(api):
    accounts.create("bob", accounts.credentials_from_password("bob", PASSWORD), phone_e164=PHONE)
    before = accounts.get_by_username("bob")
    assert call(api, "is_phone_number_used", PHONE, DOMAIN) == s("ERROR_ALIAS_DOESNT_EXIST")
    # A stranger asking for the number under another username gets the same OK as anyone...
    args = (PHONE, "mallory", ha1("MD5", "mallory", "x"), "Unknown", DOMAIN, "fr", "MD5")
    assert call(api, "create_phone_account", *args) == s("OK")
    # ...and only the number's owner, after proving the code, learns that it is taken.
    code = last_code(PHONE)
    assert call(api, "activate_phone_account", PHONE, "mallory", code, DOMAIN, "MD5") == s(
        "ERROR_ALIAS_ALREADY_IN_USE"
    )
    assert accounts.get_by_username("bob") == before
    assert accounts.get_by_username("mallory") is None
    assert call(api, "get_phone_number_for_account", "bob", DOMAIN) == s(
        "ERROR_ACCOUNT_DOESNT_EXIST"
    )


def test_same_username_recovers_with_the_new_credentials(api, edge):
    accounts.create(
        "bob", accounts.credentials_from_password("bob", "old password"), phone_e164=PHONE
    )
    key = ha1("SHA-256", "bob", PASSWORD)
    assert call(
        api, "create_phone_account", PHONE, "bob", key, "Unknown", DOMAIN, "fr", "SHA-256"
    ) == s("OK")
    code = last_code(PHONE)
    assert call(api, "activate_phone_account", PHONE, "bob", code, DOMAIN, "SHA-256") == s(key)
    assert register(edge, "bob", password=PASSWORD) == 200
    assert register(edge, "bob", password="old password") == 401
    # The app asking with the number as username: the number's account is bob, not that.
    expire_codes()
    assert call(api, "create_phone_account", PHONE, PHONE, "", "Unknown", DOMAIN, "fr", "MD5") == s(
        "OK"
    )
    assert call(api, "activate_phone_account", PHONE, PHONE, last_code(PHONE), DOMAIN, "MD5") == s(
        "ERROR_ALIAS_ALREADY_IN_USE"
    )


# --- Link → activate link ---------------------------------------------------------------------


def test_link_then_activate_link_with_the_accounts_ha1(api, edge):
    accounts.create("frank", accounts.credentials_from_password("frank", PASSWORD))
    key = ha1("SHA-256", "frank", PASSWORD)
    assert call(api, "link_phone_number_with_account", PHONE, "frank", DOMAIN, "fr") == s("OK")
    code = last_code(PHONE)
    wrong_key = ha1("SHA-256", "frank", "guess")
    assert call(
        api, "activate_phone_number_link", PHONE, "frank", code, wrong_key, DOMAIN, "SHA-256"
    ) == s("ERROR_PASSWORD_DOESNT_MATCH")
    assert call(
        api, "activate_phone_number_link", PHONE, "nobody", code, key, DOMAIN, "SHA-256"
    ) == s("ERROR_PASSWORD_DOESNT_MATCH")
    # The code is bound to the number it was sent to: another is a wrong answer.
    assert call(
        api, "activate_phone_number_link", OTHER, "frank", code, key, DOMAIN, "SHA-256"
    ) == s("ERROR_KEY_DOESNT_MATCH")
    assert call(
        api, "activate_phone_number_link", PHONE, "frank", code, key, DOMAIN, "SHA-256"
    ) == s("OK")
    assert accounts.get_by_username("frank").phone == PHONE
    assert register(edge, "frank", password=PASSWORD) == 200


def test_a_link_code_is_bound_to_the_account_it_was_asked_for(api):
    accounts.create("frank", accounts.credentials_from_password("frank", PASSWORD))
    accounts.create("grace", accounts.credentials_from_password("grace", PASSWORD))
    call(api, "link_phone_number_with_account", PHONE, "frank", DOMAIN, "fr")
    code = last_code(PHONE)
    grace = ha1("MD5", "grace", PASSWORD)
    assert call(api, "activate_phone_number_link", PHONE, "grace", code, grace, DOMAIN, "MD5") == s(
        "ERROR_KEY_DOESNT_MATCH"
    )
    assert accounts.get_by_username("grace").phone is None


def test_link_moves_the_number_from_its_previous_account(api):
    accounts.create("old", accounts.credentials_from_password("old", PASSWORD), phone_e164=PHONE)
    accounts.create("frank", accounts.credentials_from_password("frank", PASSWORD))
    call(api, "link_phone_number_with_account", PHONE, "frank", DOMAIN, "fr")
    key = ha1("MD5", "frank", PASSWORD)
    assert call(
        api, "activate_phone_number_link", PHONE, "frank", last_code(PHONE), key, DOMAIN, "MD5"
    ) == s("OK")
    assert accounts.find_by_phone(PHONE).username == "frank"
    assert accounts.get_by_username("old").phone is None


def test_link_to_an_unknown_or_disabled_account_answers_the_same_and_sends_nothing(api):
    assert call(api, "link_phone_number_with_account", PHONE, "nobody", DOMAIN, "fr") == s("OK")
    accounts.create("frank", accounts.credentials_from_password("frank", PASSWORD))
    accounts.set_disabled("frank@example.org", True)
    assert call(api, "link_phone_number_with_account", OTHER, "frank", DOMAIN, "fr") == s("OK")
    assert call(api, "is_account_activated", "frank", DOMAIN, "MD5") == s("OK")
    assert sent_sms() == []


# --- Recovery ---------------------------------------------------------------------------------


def test_recover_by_number_sets_new_credentials_and_ends_the_old(api, edge):
    accounts.create(
        "henry", accounts.credentials_from_password("henry", PASSWORD), phone_e164=PHONE
    )
    assert register(edge, "henry", password=PASSWORD) == 200
    assert call(api, "recover_phone_account", PHONE, DOMAIN, "fr") == s(PHONE)
    code = last_code(PHONE)
    wrong = f"{(int(code) + 1) % 10000:04d}"
    assert call(api, "recover_account_from_confirmation_key", "henry", wrong, DOMAIN, "MD5") == s(
        "ERROR_KEY_DOESNT_MATCH"
    )
    answer = call(api, "recover_account_from_confirmation_key", PHONE, code, DOMAIN, "MD5")
    henry = accounts.get_by_username("henry")
    assert answer == Answer(struct=[("password", henry.ha1_md5), ("algorithm", "MD5")])
    assert henry.ha1_md5 != ha1("MD5", "henry", PASSWORD)  # never the existing HA1
    assert henry.revoked_at > 0  # the old sessions end (see tests/edge/test_revocation.py)
    assert register(edge, "henry", ha1_hex=answer.struct[0][1], algorithm="MD5") == 200
    assert register(edge, "henry", password=PASSWORD) == 401  # the old password is dead


def test_recover_answers_the_asked_algorithm(api):
    accounts.create(
        "ivy", accounts.credentials_from_ha1(ha1("MD5", "ivy", PASSWORD), "MD5"), phone_e164=PHONE
    )
    call(api, "recover_phone_account", PHONE, DOMAIN, "fr")
    answer = call(
        api, "recover_account_from_confirmation_key", "ivy", last_code(PHONE), DOMAIN, "SHA-256"
    )
    ivy = accounts.get_by_username("ivy")
    assert answer.struct == [("password", ivy.ha1_sha256), ("algorithm", "SHA-256")]
