"""The signed-in account over REST: HTTP Basic and Digest (SHA-256, MD5), /v1/accounts/me,
linking and unlinking a number, and contact discovery."""

from __future__ import annotations

import json

import pytest

from chalicelib import accounts, clock, digest, settings
from testkit.sms import last_code
from tests.accounts_support import (
    H_JSON,
    PASSWORD,
    basic,
    challenges,
    digest_header,
    pass_interval,
    post,
    sign_up,
)

A = "+33612345678"
B = "+33698765432"
C = "+32470123456"
ME = "/v1/accounts/me"


def assert_error(r, status: int, code: str) -> None:
    assert r.status_code == status, (r.status_code, r.body)
    assert r.json_body["error"]["code"] == code


# --- Authentication ------------------------------------------------------------------------


def test_401_offers_digest_sha256_md5_and_basic(api):
    r = api.http.get(ME)
    assert_error(r, 401, "unauthorized")
    offered = challenges(r)
    assert [c.split(" ")[0] for c in offered] == ["Digest", "Digest", "Basic"]
    assert "algorithm=SHA-256" in offered[0] and "algorithm=MD5" in offered[1]
    for c in offered[:2]:
        params = digest.parse_params(c)
        assert params["realm"] == "example.org" and params["qop"] == "auth"
    assert offered[2] == 'Basic realm="example.org", charset="UTF-8"'


def test_basic_auth(api):
    sign_up(api, A, "alice")
    r = api.http.get(ME, headers=basic("alice"))
    assert r.status_code == 200
    assert r.json_body["username"] == "alice" and r.json_body["phone"] == A
    assert r.json_body["discoverable"] is True
    assert "ha1_md5" not in r.json_body and "ha1_sha256" not in r.json_body
    for headers in [
        basic("alice", "wrong password"),
        basic("bob"),
        {"Authorization": "Basic !!!"},
        {"Authorization": "Basic " + "YWxpY2U="},  # "alice" without a colon
        {"Authorization": "Bearer abc"},
        {"Authorization": "Basic " + "A" * 5000},
    ]:
        assert_error(api.http.get(ME, headers=headers), 401, "unauthorized")


@pytest.mark.parametrize("index", [0, 1], ids=["SHA-256", "MD5"])
def test_digest_auth(api, index):
    sign_up(api, A, "alice")
    challenge = challenges(api.http.get(ME))[index]
    r = api.http.get(ME, headers=digest_header(challenge, "alice", PASSWORD, "GET", ME))
    assert r.status_code == 200 and r.json_body["username"] == "alice"
    # Same nonce for another method or path, wrong password, wrong realm: refused.
    for headers in [
        digest_header(challenge, "alice", PASSWORD, "DELETE", ME),
        digest_header(challenge, "alice", PASSWORD, "GET", "/v1/other"),
        digest_header(challenge, "alice", "wrong password", "GET", ME),
        digest_header(challenge, "alice", PASSWORD, "GET", ME, realm="evil.org"),
        {"Authorization": 'Digest username="alice", garbage'},
    ]:
        assert_error(api.http.get(ME, headers=headers), 401, "unauthorized")


def test_a_replayed_digest_authorization_is_refused(api):
    """The same Authorization again (same nonce and count) is a replay, whichever Lambda
    instance gets it (the count lives in DynamoDB); a rising count on the nonce is fine."""
    sign_up(api, A, "alice")
    challenge = challenges(api.http.get(ME))[0]
    headers = digest_header(challenge, "alice", PASSWORD, "GET", ME)
    assert api.http.get(ME, headers=headers).status_code == 200
    r = api.http.get(ME, headers=headers)
    assert_error(r, 401, "unauthorized")
    assert all("stale=true" in c for c in challenges(r)[:2])
    params = digest.parse_params(headers["Authorization"])
    ha1 = digest.ha1("SHA-256", "alice", params["realm"], PASSWORD)
    nc2 = digest.expected_response("SHA-256", ha1, "GET", ME, params["nonce"], qop="auth",
                                   nc="00000002", cnonce=params["cnonce"])  # fmt: skip
    rising = headers["Authorization"].replace("nc=00000001", "nc=00000002")
    rising = rising.replace(params["response"], nc2)
    assert api.http.get(ME, headers={"Authorization": rising}).status_code == 200
    # Without qop there is no count to check: refused.
    bare = digest.expected_response("SHA-256", ha1, "GET", ME, params["nonce"])
    no_qop = (f'Digest username="alice", realm="{params["realm"]}", nonce="{params["nonce"]}", '
              f'uri="{ME}", algorithm=SHA-256, response="{bare}"')  # fmt: skip
    assert_error(api.http.get(ME, headers={"Authorization": no_qop}), 401, "unauthorized")


def test_digest_on_a_post_with_a_body(api):
    sign_up(api, A, "alice")
    challenge = challenges(api.http.get(ME))[0]
    path = "/v1/contacts/discover"
    headers = digest_header(challenge, "alice", PASSWORD, "POST", path)
    r = post(api, path, {"phones": [A]}, headers)
    assert r.status_code == 200


def test_digest_stale_nonce_is_401_with_stale_true(api):
    sign_up(api, A, "alice")
    challenge = challenges(api.http.get(ME))[0]
    nonces = digest.Nonces(settings.get().nonce_key, settings.get().nonce_ttl_seconds)
    # Nonces are bound to the client's address: the one chalice's local server reports.
    from chalice.local import LambdaEventConverter

    source = LambdaEventConverter.LOCAL_SOURCE_IP
    old = nonces.make(
        "example.org", now=clock.now() - settings.get().nonce_ttl_seconds - 1, bind=source
    )
    stale_challenge = challenge.replace(digest.parse_params(challenge)["nonce"], old)
    r = api.http.get(ME, headers=digest_header(stale_challenge, "alice", PASSWORD, "GET", ME))
    assert_error(r, 401, "unauthorized")
    assert all("stale=true" in c for c in challenges(r)[:2])
    forged = challenge.replace(digest.parse_params(challenge)["nonce"], "1.2.3")
    r = api.http.get(ME, headers=digest_header(forged, "alice", PASSWORD, "GET", ME))
    assert_error(r, 401, "unauthorized")
    assert not any("stale" in c for c in challenges(r))


def test_digest_sha256_for_an_account_created_from_an_md5_ha1(api):
    md5 = digest.ha1("MD5", "legacy", "example.org", PASSWORD)
    accounts.create("legacy", accounts.credentials_from_ha1(md5, "MD5"))
    sha_challenge, md5_challenge = challenges(api.http.get(ME))[:2]
    auth = digest_header(md5_challenge, "legacy", PASSWORD, "GET", ME)
    assert api.http.get(ME, headers=auth).status_code == 200
    auth = digest_header(sha_challenge, "legacy", PASSWORD, "GET", ME)
    assert_error(api.http.get(ME, headers=auth), 401, "unauthorized")
    # Once the password has been seen (Basic), SHA-256 works too.
    assert api.http.get(ME, headers=basic("legacy")).status_code == 200
    assert api.http.get(ME, headers=auth).status_code == 200


def test_disabled_account_is_403(api):
    sign_up(api, A, "alice")
    accounts.set_disabled("alice@example.org", True)
    assert_error(api.http.get(ME, headers=basic("alice")), 403, "account_disabled")
    assert_error(api.http.get(ME, headers=basic("alice", "wrong password")), 401, "unauthorized")


# --- /v1/accounts/me -----------------------------------------------------------------------


def test_patch_discoverable_and_password(api):
    sign_up(api, A, "alice")
    r = api.http.patch(
        ME, headers={**basic("alice"), **H_JSON}, body=json.dumps({"discoverable": False})
    )
    assert r.status_code == 200 and r.json_body["discoverable"] is False
    r = api.http.patch(
        ME, headers={**basic("alice"), **H_JSON}, body=json.dumps({"password": "brand new pw"})
    )
    assert r.status_code == 200
    assert_error(api.http.get(ME, headers=basic("alice")), 401, "unauthorized")
    assert api.http.get(ME, headers=basic("alice", "brand new pw")).status_code == 200


BAD_PATCHES = [
    ({}, "missing_field"),
    ({"discoverable": "yes"}, "invalid_field"),
    ({"discoverable": 1}, "invalid_field"),
    ({"password": "short"}, "invalid_field"),
    ({"username": "bob"}, "unknown_field"),
    ("not json", "invalid_json"),
]


def test_bad_patches(api):
    sign_up(api, A, "alice")
    for body, code in BAD_PATCHES:
        raw = body if isinstance(body, str) else json.dumps(body)
        r = api.http.patch(ME, headers={**basic("alice"), **H_JSON}, body=raw)
        assert (r.status_code, r.json_body["error"]["code"]) == (400, code), body


def test_patch_requires_authentication_before_reading_the_body(api):
    assert_error(api.http.patch(ME, body="not json"), 401, "unauthorized")


def test_delete_frees_the_username_and_the_number(api):
    sign_up(api, A, "alice")
    r = api.http.delete(ME, headers=basic("alice"))
    assert r.status_code == 204 and r.body == b""
    assert_error(api.http.get(ME, headers=basic("alice")), 401, "unauthorized")
    pass_interval()
    again = sign_up(api, A, "alice")
    assert again["recovered"] is False


# --- Linking a number ----------------------------------------------------------------------


def link(api, user: str, e164: str) -> None:
    r = post(api, ME + "/phone", {"phone": e164}, basic(user))
    assert r.status_code == 202 and r.json_body == {
        "expires_in": settings.get().code_ttl_seconds
    }, r.body
    r = post(api, ME + "/phone/confirm", {"code": last_code(e164)}, basic(user))
    assert r.status_code == 200, r.body


def test_link_and_unlink(api):
    sign_up(api, A, "alice")
    accounts.create("bob", accounts.credentials_from_password("bob", PASSWORD))
    link(api, "bob", B)
    assert api.http.get(ME, headers=basic("bob")).json_body["phone"] == B
    r = api.http.delete(ME + "/phone", headers=basic("bob"))
    assert r.status_code == 204
    assert api.http.get(ME, headers=basic("bob")).json_body["phone"] is None
    assert_error(api.http.delete(ME + "/phone", headers=basic("bob")), 404, "no_phone")
    assert accounts.find_by_phone(B) is None


def test_link_moves_a_number_from_another_account(api):
    sign_up(api, A, "alice")
    accounts.create("bob", accounts.credentials_from_password("bob", PASSWORD))
    pass_interval()
    link(api, "bob", A)
    assert api.http.get(ME, headers=basic("alice")).json_body["phone"] is None
    assert api.http.get(ME, headers=basic("bob")).json_body["phone"] == A
    assert accounts.find_by_phone(A).username == "bob"


def test_link_national_number_in_the_callers_region(api):
    sign_up(api, C, "alice")  # a Belgian number
    r = post(api, ME + "/phone", {"phone": "0470 12 34 57"}, basic("alice"))
    assert r.status_code == 202
    r = post(api, ME + "/phone/confirm", {"code": last_code("+32470123457")}, basic("alice"))
    assert r.status_code == 200 and r.json_body["phone"] == "+32470123457"
    assert accounts.find_by_phone(C) is None  # the former number is freed


def test_link_own_number_is_409(api):
    sign_up(api, A, "alice")
    assert_error(
        post(api, ME + "/phone", {"phone": A}, basic("alice")), 409, "phone_already_linked"
    )


def test_link_code_is_for_its_account_only(api):
    sign_up(api, A, "alice")
    accounts.create("bob", accounts.credentials_from_password("bob", PASSWORD))
    post(api, ME + "/phone", {"phone": B}, basic("alice"))
    code = last_code(B)
    r = post(api, ME + "/phone/confirm", {"code": code}, basic("bob"))
    assert_error(r, 404, "code_not_found")
    r = post(api, ME + "/phone/confirm", {"code": code}, basic("alice"))
    assert r.status_code == 200 and r.json_body["phone"] == B
    again = post(api, ME + "/phone/confirm", {"code": code}, basic("alice"))
    assert again.status_code == 200 and again.json_body["phone"] == B


BAD_LINKS = [
    ("/phone", {"phone": "nope"}, 400, "invalid_phone"),
    ("/phone", {"phone": 612345678}, 400, "invalid_phone"),
    ("/phone", {"phone": "+8613800138000"}, 403, "region_not_allowed"),
    ("/phone", {"phone": B, "extra": 1}, 400, "unknown_field"),
    ("/phone", {}, 400, "missing_field"),
    ("/phone/confirm", {"code": "1234"}, 404, "code_not_found"),
    ("/phone/confirm", {"code": 1234}, 400, "invalid_field"),
    ("/phone/confirm", {"code": "1234", "phone": B}, 400, "unknown_field"),
]


def test_bad_link_requests(api):
    sign_up(api, A, "alice")
    for path, body, status, code in BAD_LINKS:
        r = post(api, ME + path, body, basic("alice"))
        assert (r.status_code, r.json_body["error"]["code"]) == (status, code), (path, body)


def test_link_routes_require_authentication(api):
    assert_error(post(api, ME + "/phone", {"phone": B}), 401, "unauthorized")
    assert_error(post(api, ME + "/phone/confirm", {"code": "1234"}), 401, "unauthorized")
    assert_error(api.http.delete(ME + "/phone"), 401, "unauthorized")
    assert_error(api.http.delete(ME), 401, "unauthorized")


# --- Discovery ------------------------------------------------------------------------------


def discover(api, user: str, body):
    return post(api, "/v1/contacts/discover", body, basic(user))


def test_discover_lists_discoverable_accounts_only(api):
    sign_up(api, A, "alice")
    sign_up(api, B, "bob")
    sign_up(api, C, "carol")
    api.http.patch(
        ME, headers={**basic("carol"), **H_JSON}, body=json.dumps({"discoverable": False})
    )
    phones = ["06 98 76 54 32", "+32 470 12 34 56", "not a number", "+33600000000", "0612345678"]
    r = discover(api, "alice", {"phones": phones})
    assert r.status_code == 200
    assert r.json_body == {
        "matches": [
            {"phone": "06 98 76 54 32", "e164": B, "sip_uri": "sip:bob@example.org"},
            {"phone": "0612345678", "e164": A, "sip_uri": "sip:alice@example.org"},
        ],
        "deferred": [],
    }


def test_discover_default_region_is_the_callers_country(api):
    sign_up(api, A, "alice")
    sign_up(api, C, "carol")  # Belgian
    r = discover(api, "carol", {"phones": ["0470 12 34 56", "06 12 34 56 78"]})
    assert [m["e164"] for m in r.json_body["matches"]] == [C]
    r = discover(api, "carol", {"phones": ["06 12 34 56 78"], "default_region": "FR"})
    assert [m["e164"] for m in r.json_body["matches"]] == [A]


def test_discover_hides_disabled_accounts(api):
    sign_up(api, A, "alice")
    sign_up(api, B, "bob")
    accounts.set_disabled("bob@example.org", True)
    assert discover(api, "alice", {"phones": [B]}).json_body == {"matches": [], "deferred": []}


def test_discover_limit_is_413(api):
    sign_up(api, A, "alice")
    r = discover(api, "alice", {"phones": [A] * 5000})
    assert r.status_code == 200 and len(r.json_body["matches"]) == 1
    assert_error(discover(api, "alice", {"phones": [A] * 5001}), 413, "too_many_phones")


BAD_DISCOVERS = [
    ({"phones": "+33612345678"}, "invalid_field"),
    ({"phones": [A, 33612345678]}, "invalid_field"),
    ({"phones": [A, None]}, "invalid_field"),
    ({"phones": {"a": A}}, "invalid_field"),
    ({"phones": [], "default_region": "ZZ"}, "invalid_field"),
    ({}, "missing_field"),
    ({"phones": [], "limit": 3}, "unknown_field"),
]


def test_bad_discover_requests(api):
    sign_up(api, A, "alice")
    for body, code in BAD_DISCOVERS:
        r = discover(api, "alice", body)
        assert (r.status_code, r.json_body["error"]["code"]) == (400, code), body


def test_discover_requires_authentication(api):
    assert_error(post(api, "/v1/contacts/discover", {"phones": [A]}), 401, "unauthorized")
