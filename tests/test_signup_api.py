"""Sign-up over REST: request a code, confirm it (201 new, 200 recovered), retries, limits,
no enumeration, and bad input answered 4xx with the error envelope, never 500."""

from __future__ import annotations

import json

import pytest

from chalicelib import accounts, settings
from testkit.sms import last_code, sent_sms
from tests.accounts_support import PASSWORD, basic, expire_codes, pass_interval, post, sign_up

A = "+33612345678"
B = "+33698765432"
C = "+33655555555"


def request(api, body, headers=None):
    return post(api, "/v1/signup/phone", body, headers)


def confirm(api, body):
    return post(api, "/v1/signup/phone/confirm", body)


def assert_error(r, status: int, code: str, mentions: str | None = None) -> None:
    assert r.status_code == status, (r.status_code, r.body)
    error = r.json_body["error"]
    assert error["code"] == code and error["message"]
    if mentions:
        assert mentions in error["message"]


def test_signup_with_a_number_gives_the_e164_username(api):
    r = request(api, {"phone": A})
    assert r.status_code == 202 and r.json_body == {"expires_in": settings.get().code_ttl_seconds}
    r = confirm(api, {"phone": A, "code": last_code(A), "password": PASSWORD})
    assert r.status_code == 201
    assert r.json_body == {
        "username": A,
        "sip_uri": f"sip:{A}@example.org",
        "phone": A,
        "recovered": False,
        "credentials_replaced": False,
        "sessions_ended": False,
    }
    assert api.http.get("/v1/accounts/me", headers=basic(A)).status_code == 200


def test_signup_with_a_username(api):
    body = sign_up(api, A, "alice")
    assert body["username"] == "alice" and body["sip_uri"] == "sip:alice@example.org"
    assert accounts.get_by_username("alice").phone == A


@pytest.mark.parametrize(
    ("given", "region"),
    [
        ("0612345678", None),
        ("06 12 34 56 78", "FR"),
        ("0033612345678", None),
        ("+33 6 12 34 56 78", None),
    ],
)
def test_numbers_in_national_and_00_forms(api, given, region):
    body = {"phone": given} | ({"default_region": region} if region else {})
    assert request(api, body).status_code == 202
    code = last_code(A)
    r = confirm(
        api,
        {"phone": given, "code": code, "password": PASSWORD}
        | ({"default_region": region} if region else {}),
    )
    assert r.status_code == 201 and r.json_body["phone"] == A


def test_national_number_of_another_region(api):
    r = request(api, {"phone": "0151 23456789", "default_region": "DE"})
    assert r.status_code == 202
    assert sent_sms()[-1][0] == "+4915123456789"


def test_same_answer_whether_or_not_the_number_has_an_account(api):
    fresh = request(api, {"phone": B})
    sign_up(api, A)
    pass_interval()
    existing = request(api, {"phone": A})
    assert (fresh.status_code, fresh.json_body) == (existing.status_code, existing.json_body)


def test_confirming_a_known_number_recovers_its_account(api):
    sign_up(api, A, "alice")
    pass_interval()
    assert request(api, {"phone": A}).status_code == 202
    r = confirm(api, {"phone": A, "code": last_code(A), "password": "a new password"})
    assert r.status_code == 200
    assert r.json_body == {
        "username": "alice",
        "sip_uri": "sip:alice@example.org",
        "phone": A,
        "recovered": True,
        # The answer says what recovery did: the old password is dead, its sessions end.
        "credentials_replaced": True,
        "sessions_ended": True,
    }
    assert api.http.get("/v1/accounts/me", headers=basic("alice")).status_code == 401
    assert (
        api.http.get("/v1/accounts/me", headers=basic("alice", "a new password")).status_code == 200
    )


def test_requested_username_is_ignored_when_recovering(api):
    sign_up(api, A, "alice")
    pass_interval()
    assert request(api, {"phone": A, "username": "other"}).status_code == 202
    r = confirm(api, {"phone": A, "code": last_code(A), "password": PASSWORD})
    assert r.status_code == 200 and r.json_body["username"] == "alice"
    assert accounts.get_by_username("other") is None


def test_taken_username_is_told_only_once_the_number_is_proven(api):
    sign_up(api, A, "alice")
    taken = request(api, {"phone": B, "username": "alice"})
    free = request(api, {"phone": C, "username": "zoe"})
    # The request answers the same for a taken and a free username: nothing before proof.
    assert (taken.status_code, taken.json_body) == (free.status_code, free.json_body)
    body = {"phone": B, "code": last_code(B), "password": PASSWORD}
    assert_error(confirm(api, body), 409, "username_taken", "username")


def test_username_taken_between_request_and_confirm_is_409_for_good(api):
    assert request(api, {"phone": B, "username": "alice"}).status_code == 202
    code_b = last_code(B)
    sign_up(api, A, "alice")
    body = {"phone": B, "code": code_b, "password": PASSWORD}
    assert_error(confirm(api, body), 409, "username_taken")
    assert_error(confirm(api, body), 409, "username_taken")  # a retry answers the same
    assert accounts.find_by_phone(B) is None


def test_e164_username_taken_by_a_former_owner(api):
    sign_up(api, A)  # username "+33612345678"
    creds = basic(A)
    assert api.http.delete("/v1/accounts/me/phone", headers=creds).status_code == 204
    pass_interval()
    request(api, {"phone": A})
    r = confirm(api, {"phone": A, "code": last_code(A), "password": PASSWORD})
    assert_error(r, 409, "username_taken")
    pass_interval()
    sign_up(api, A, "newowner")


def test_retried_confirm_answers_the_same(api):
    request(api, {"phone": A, "username": "alice"})
    body = {"phone": A, "code": last_code(A), "password": PASSWORD}
    first = confirm(api, body)
    second = confirm(api, body)
    assert first.status_code == second.status_code == 201
    assert first.json_body == second.json_body
    # Same code with other credentials is not a retry: refused, password unchanged.
    r = confirm(api, {**body, "password": "another password"})
    assert_error(r, 409, "conflict")
    assert accounts.authenticate_password("alice", PASSWORD)
    # Once the code has expired, it is gone.
    expire_codes()
    assert_error(confirm(api, body), 410, "code_expired")


def test_retried_recovery_answers_the_same(api):
    sign_up(api, A, "alice")
    pass_interval()
    request(api, {"phone": A})
    body = {"phone": A, "code": last_code(A), "password": "a new password"}
    assert confirm(api, body).json_body == confirm(api, body).json_body
    assert confirm(api, body).status_code == 200


def test_wrong_codes_then_dead(api):
    request(api, {"phone": A})
    code = last_code(A)
    bad = f"{(int(code) + 1) % 10000:04d}"
    for _ in range(4):
        assert_error(
            confirm(api, {"phone": A, "code": bad, "password": PASSWORD}), 400, "code_mismatch"
        )
    assert_error(confirm(api, {"phone": A, "code": bad, "password": PASSWORD}), 410, "code_expired")
    assert_error(
        confirm(api, {"phone": A, "code": code, "password": PASSWORD}), 410, "code_expired"
    )


def test_confirm_without_a_pending_code_is_404(api):
    assert_error(
        confirm(api, {"phone": A, "code": "1234", "password": PASSWORD}), 404, "code_not_found"
    )


def test_invalid_password_does_not_burn_the_code(api):
    request(api, {"phone": A})
    code = last_code(A)
    assert_error(
        confirm(api, {"phone": A, "code": code, "password": "short"}),
        400,
        "invalid_field",
        "password",
    )
    assert confirm(api, {"phone": A, "code": code, "password": PASSWORD}).status_code == 201


def test_limits_answer_429_with_retry_after(api):
    assert request(api, {"phone": A}).status_code == 202
    r = request(api, {"phone": A})
    assert_error(r, 429, "rate_limited")
    assert 1 <= int(r.headers["Retry-After"]) <= settings.get().sms_per_number_interval


def test_per_ip_limit_uses_the_request_source_address(api):
    for i in range(10):
        assert request(api, {"phone": f"+336123456{i:02d}"}).status_code == 202
    r = request(api, {"phone": "+33612345699"})
    assert_error(r, 429, "rate_limited", "source address")
    assert int(r.headers["Retry-After"]) > 0


def test_country_not_allowed_is_403(api):
    assert_error(request(api, {"phone": "+8613800138000"}), 403, "region_not_allowed")


def test_sns_failure_is_503(api, monkeypatch):
    from botocore.exceptions import ClientError

    from chalicelib import aws

    def publish(**kw):
        raise ClientError({"Error": {"Code": "InternalError", "Message": "x"}}, "Publish")

    monkeypatch.setattr(aws.client("sns"), "publish", publish)
    r = request(api, {"phone": A})
    assert_error(r, 503, "sms_unavailable")
    low = settings.get().retry_after
    assert low <= int(r.headers["Retry-After"]) <= low + settings.get().retry_after_jitter
    monkeypatch.undo()
    assert request(api, {"phone": A}).status_code == 202  # nothing was reserved


def test_disabled_account_cannot_be_recovered(api):
    sign_up(api, A, "alice")
    accounts.set_disabled("alice@example.org", True)
    pass_interval()
    assert request(api, {"phone": A}).status_code == 202  # no enumeration
    r = confirm(api, {"phone": A, "code": last_code(A), "password": "a new password"})
    assert_error(r, 403, "account_disabled")
    assert accounts.authenticate_password("alice", PASSWORD)


# --- Bad input -----------------------------------------------------------------------------

BAD_REQUESTS = [
    (b"{not json", 400, "invalid_json"),
    (b"", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_json"),
    (b'"+33612345678"', 400, "invalid_json"),
    (b"\xff\xfe", 400, "invalid_json"),
    (b"[" * 100000 + b"]" * 100000, 400, "invalid_json"),
    ({}, 400, "missing_field"),
    ({"phone": A, "admin": True}, 400, "unknown_field"),
    ({"phone": 33612345678}, 400, "invalid_phone"),
    ({"phone": None}, 400, "invalid_phone"),
    ({"phone": ["+33612345678"]}, 400, "invalid_phone"),
    ({"phone": "+33 1"}, 400, "invalid_phone"),
    ({"phone": "+999123456789"}, 400, "invalid_phone"),
    ({"phone": "hello"}, 400, "invalid_phone"),
    ({"phone": "1" * 100}, 400, "invalid_phone"),
    ({"phone": "612345678", "default_region": "XX"}, 400, "invalid_field"),
    ({"phone": "612345678", "default_region": 33}, 400, "invalid_field"),
    ({"phone": A, "username": "Al"}, 400, "invalid_username"),
    ({"phone": A, "username": "12345"}, 400, "invalid_username"),
    ({"phone": A, "username": 12345}, 400, "invalid_username"),
    ({"phone": A, "username": None}, 202, None),
]


def test_bad_signup_requests(api):
    # One stack for all cases (they are refused before any state or limit is touched).
    for body, status, code in BAD_REQUESTS:
        r = request(api, body)
        case = repr(body)[:80]
        assert r.status_code == status, (case, r.body)
        if code is None:
            continue
        assert r.json_body["error"]["code"] == code, case
        if code in {"invalid_phone", "invalid_username"}:
            assert r.json_body["error"]["message"].startswith(("phone", "username")), case


BAD_CONFIRMS = [
    ({"phone": A, "code": "1234"}, 400, "missing_field"),
    ({"phone": A, "code": 1234, "password": PASSWORD}, 400, "invalid_field"),
    ({"phone": A, "code": "12345", "password": PASSWORD}, 400, "invalid_field"),
    ({"phone": A, "code": "1234", "password": 12345678}, 400, "invalid_field"),
    ({"phone": A, "code": "1234", "password": "x" * 300}, 400, "invalid_field"),
    ({"phone": "0", "code": "1234", "password": PASSWORD}, 400, "invalid_phone"),
    ({"phone": A, "code": "1234", "password": PASSWORD, "ha1": "x"}, 400, "unknown_field"),
]


def test_bad_confirms(api):
    request(api, {"phone": A})
    for body, status, code in BAD_CONFIRMS:
        r = confirm(api, body)
        assert (r.status_code, r.json_body["error"]["code"]) == (status, code), body
    # None of them used the code or a try.
    r = confirm(api, {"phone": A, "code": last_code(A), "password": PASSWORD})
    assert r.status_code == 201


def test_oversized_body_is_413(api):
    body = json.dumps({"phone": A, "username": "x" * (settings.get().max_body_bytes + 1)})
    assert_error(request(api, body), 413, "body_too_large")


def test_wrong_content_type_is_415(api):
    r = api.http.post(
        "/v1/signup/phone",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=b"phone=%2B33612345678",
    )
    assert_error(r, 415, "unsupported_media_type")
    r = api.http.post(
        "/v1/signup/phone",
        headers={"Content-Type": "application/json; charset=utf-8"},
        body=json.dumps({"phone": A}),
    )
    assert r.status_code == 202


def test_no_code_or_full_number_in_logs_and_metrics_emitted(api, capsys, log_records):
    sign_up(api, A, "alice")
    pass_interval()
    request(api, {"phone": A})
    confirm(
        api,
        {
            "phone": A,
            "code": "0000" if last_code(A) != "0000" else "1111",
            "password": PASSWORD,
        },
    )
    confirm(api, {"phone": A, "code": last_code(A), "password": PASSWORD})
    out = capsys.readouterr().out + "\n".join(log_records)
    codes = [text[-4:] for _, text in sent_sms()]
    from chalicelib.observability import pseudonym

    assert pseudonym(A) in out  # a keyed hash of the number, never the number
    assert A not in out and "612345678" not in out
    for code in codes:
        assert f"code is {code}" not in out and f'"{code}"' not in out
    parsed = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    emf = [p for p in parsed if "_aws" in p]
    names = {m["Name"] for p in emf for d in p["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"CodesSent", "Signups", "Recoveries", "CodeFailures"} <= names
    logs = [p for p in parsed if "level" in p]
    assert logs and all(p.get("correlation_id") for p in logs)


def test_a_retried_sign_up_sends_no_second_sms_and_keeps_the_code(api):
    """A client whose first answer was lost (a timeout, a 503 after the SMS went) sends again:
    the number gets no second SMS, and the code it already has still works once."""
    first = request(api, {"phone": A, "username": "alice"})
    assert first.status_code == 202
    sent = len(sent_sms())
    code = last_code(A)
    again = request(api, {"phone": A, "username": "alice"})
    assert again.status_code == 429 and int(again.headers["Retry-After"]) > 0
    assert len(sent_sms()) == sent  # nothing sent twice
    body = {"phone": A, "code": code, "password": PASSWORD}
    assert confirm(api, body).status_code == 201
    assert confirm(api, body).status_code == 201  # a retried confirm: the same answer
    assert len(sent_sms()) == sent
