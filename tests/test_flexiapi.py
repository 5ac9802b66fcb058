"""The Linphone apps' account API (FlexiAPI subset) route by route, as each SDK calls it: the
answers' shapes, statuses and Content-Type, and for each operation bad input, a stranger, a
wrong code, a replayed token and the budgets. Linphone 6's requests are built from its
`AccountManagerServices` (tests/data/interop/linphone-6/README.md): no Content-Type without a
body, From only on accounts/me/*, a User-Agent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client

from chalicelib import accounts, clock, settings
from chalicelib.accounts import tokens
from chalicelib.live import registrar
from testkit.sms import last_code
from tests.accounts_support import challenges, pass_interval
from tests.conftest import advance_clock
from tests.flexiapi_support import (
    APNS,
    APP_PASSWORD,
    FCM,
    create_account,
    new_token,
    post_json,
    pushed_token,
    pushes,
    signed,
)

pytestmark = pytest.mark.usefixtures("push_apps")

from tests.flexiapi_support import push_apps  # noqa: E402,F401  (the fixture)

ANDROID = "LinphoneAndroid/6.0.1 (Pixel 8) LinphoneSDK/5.4.30 (tags/5.4.30^0)"
KATE_PHONE = "+33622222222"


def is_json(r: Any) -> Any:
    """Every answer: a JSON body, Content-Type exactly application/json (Linphone 6)."""
    assert r.headers["Content-Type"] == "application/json", r.headers
    assert r.body, "an empty body crashes Linphone 5.1"
    return json.loads(r.body)


def field_error(r: Any, field: str, status: int = 422) -> str:
    assert r.status_code == status, r.body
    body = is_json(r)
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["errors"][field], list), body
    return str(body["errors"][field][0])


def active_account(api: Client, username: str = "kate", phone: str = KATE_PHONE) -> dict:
    create_account(api, username)
    assert signed(api, "POST", "/api/accounts/me/phone/request", username,
                  body={"phone": phone}).status_code == 200  # fmt: skip
    r = signed(api, "POST", "/api/accounts/me/phone", username, body={"code": last_code(phone)})
    assert r.status_code == 200, r.body
    return dict(is_json(r))


# --- Tokens by push ---------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/api/tokens", "/api/account_creation_tokens/send-by-push"])
def test_a_token_is_pushed_as_flexiapi_pushes_it(api, route):
    r = post_json(api, route, FCM, {"User-Agent": ANDROID})
    assert (r.status_code, is_json(r)) == (200, {})
    ((device, structure),) = pushes()
    assert device == FCM["pn_prid"]
    message = json.loads(structure["GCM"])["fcmV1Message"]["message"]
    assert message["android"]["priority"] == "high"
    token = json.loads(message["android"]["data"]["custom-payload"])["token"]
    assert tokens.well_formed(token) and len(token) >= 20
    assert pushed_token(FCM["pn_prid"]) == token


def test_an_iphone_gets_a_background_push_with_custom_payload(api):
    assert post_json(api, "/api/account_creation_tokens/send-by-push", APNS).status_code == 200
    ((device, structure),) = pushes()
    body = json.loads(structure["APNS"])
    assert device == APNS["pn_prid"]
    assert body["aps"] == {"badge": 0, "content-available": 1}
    assert set(body) == {"aps", "customPayload"}
    assert tokens.well_formed(body["customPayload"]["token"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**FCM, "pn_provider": "wns"}, "pn_provider"),
        ({**FCM, "pn_param": "bad param!"}, "pn_param"),
        ({**FCM, "pn_prid": "bad/prid"}, "pn_prid"),
        ({"pn_provider": "fcm", "pn_param": "1"}, "pn_prid"),
        ({**FCM, "pn_prid": 12}, "pn_prid"),
    ],
)
def test_bad_push_parameters_are_422_on_their_field(api, body, field):
    field_error(post_json(api, "/api/tokens", body), field)
    assert pushes() == []


def test_bodies_that_are_not_json_objects_are_refused(api):
    r = post_json(api, "/api/tokens", "{not json")
    assert r.status_code == 422 and is_json(r)["message"]
    r = post_json(api, "/api/tokens", [FCM])
    assert r.status_code == 422
    r = api.http.post("/api/tokens", headers={"Content-Type": "text/plain"}, body=json.dumps(FCM))
    assert r.status_code == 415 and is_json(r)["message"]


def test_a_provider_not_set_up_is_refused(api, monkeypatch):
    monkeypatch.setenv("PUSH_APNS_APPLICATION_ARN", "")
    settings.get.cache_clear()
    assert "not set up" in field_error(post_json(api, "/api/tokens", APNS), "pn_provider")


def test_pushes_are_budgeted_per_device_per_source_and_globally(api, monkeypatch):
    assert post_json(api, "/api/tokens", FCM).status_code == 200
    again = post_json(api, "/api/tokens", FCM)
    assert again.status_code == 429 and int(again.headers["Retry-After"]) >= 1
    assert is_json(again)["message"]
    for n in range(settings.get().push_tokens_per_device_daily - 1):
        advance_clock(settings.get().push_tokens_per_device_interval + 1)
        assert post_json(api, "/api/tokens", FCM).status_code == 200, n
    advance_clock(settings.get().push_tokens_per_device_interval + 1)
    assert post_json(api, "/api/tokens", FCM).status_code == 429  # the device's day
    others = [{**FCM, "pn_prid": f"device{n}"} for n in range(20)]
    answers = [post_json(api, "/api/tokens", d).status_code for d in others]
    assert answers.count(429) and answers.index(429) == settings.get().push_tokens_per_ip_hourly - 5
    monkeypatch.setenv("PUSH_TOKENS_GLOBAL_DAILY", "0")
    monkeypatch.setenv("PUSH_TOKENS_PER_IP_HOURLY", "1000")
    settings.get.cache_clear()
    assert post_json(api, "/api/tokens", {**FCM, "pn_prid": "another"}).status_code == 429


# --- Creating the account -----------------------------------------------------------------


def create6(api: Client, token: str, username: str = "kate", **extra: Any) -> Any:
    body = {"account_creation_token": token, "algorithm": "SHA-256", "password": APP_PASSWORD,
            "username": username, **extra}  # fmt: skip
    return post_json(
        api, "/api/accounts/with-account-creation-token", body, {"User-Agent": ANDROID}
    )


def create51(api: Client, token: str, username: str = "kate", **extra: Any) -> Any:
    body = {"algorithm": "SHA-256", "domain": "example.org", "password": APP_PASSWORD,
            "token": token, "username": username, **extra}  # fmt: skip
    return post_json(api, "/api/accounts/with-token", body)


def test_linphone_6_creates_a_pending_account_and_reads_its_username_and_domain(api):
    r = create6(api, new_token(api, route="/api/account_creation_tokens/send-by-push"))
    body = is_json(r)
    assert r.status_code == 200
    assert (body["username"], body["domain"], body["activated"]) == ("kate", "example.org", False)
    assert "password" not in json.dumps(body).replace('"passwords"', "")
    account = accounts.get_by_username("kate")
    assert account is not None and not account.activated
    assert accounts.check_password(account, APP_PASSWORD)


def test_linphone_51_creates_with_its_older_route(api):
    r = create51(api, new_token(api))
    assert r.status_code == 200 and is_json(r)["username"] == "kate"
    assert field_error(create51(api, new_token(api, {**FCM, "pn_prid": "d2"}), "liam",
                                domain="elsewhere.org"), "domain")  # fmt: skip


def test_a_replayed_token_answers_the_same_request_and_no_other(api):
    token = new_token(api)
    first = create6(api, token)
    assert first.status_code == 200
    again = create6(api, token)  # the answer was lost: the app sends it again
    assert (again.status_code, is_json(again)) == (200, is_json(first))
    assert field_error(create6(api, token, "liam"), "account_creation_token")
    assert accounts.get_by_username("liam") is None
    other_password = post_json(api, "/api/accounts/with-account-creation-token", {
        "account_creation_token": token, "algorithm": "SHA-256", "password": "other password",
        "username": "kate"})  # fmt: skip
    field_error(other_password, "account_creation_token")


def test_unknown_and_expired_tokens_are_alike(api):
    unknown = field_error(create6(api, "A" * 22), "account_creation_token")
    token = new_token(api)
    advance_clock(settings.get().creation_token_ttl + 1)
    assert field_error(create6(api, token), "account_creation_token") == unknown
    assert field_error(create6(api, "../../etc"), "account_creation_token") == unknown


def test_a_taken_username_is_told_to_a_token_holder_a_few_times_only(api):
    accounts.create("bob", accounts.credentials_from_password("bob", APP_PASSWORD))
    token = new_token(api)
    tries = settings.get().creation_token_tries
    for name in ["bob"] * tries:
        assert "taken" in field_error(create6(api, token, name), "username")
    # The token is spent: a free name no longer helps, and nothing tells which names are free.
    field_error(create6(api, token, "kate"), "account_creation_token")
    assert accounts.get_by_username("kate") is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"username": "Kate"}, "username"),
        ({"username": "12345"}, "username"),
        ({"username": "+33612345678"}, "username"),
        ({"password": "short"}, "password"),
        ({"algorithm": "SHA-512"}, "algorithm"),
        ({"username": None}, "username"),
    ],
)
def test_bad_creation_input_spends_no_token(api, change, field):
    token = new_token(api)
    field_error(create6(api, token, **change), field)
    assert create6(api, token).status_code == 200


def test_an_unactivated_account_may_not_use_sip_nor_the_rest_api(api):
    create_account(api, "kate")
    from chalicelib.api import sip_auth
    from tests.accounts_support import basic

    answer = sip_auth.verify(
        "REGISTER", "example.org", {"username": "kate", "realm": "example.org"}, source="1.2.3.4"
    )
    assert answer["result"] == "forbidden"
    r = api.http.get("/v1/accounts/me", headers=basic("kate", APP_PASSWORD))
    assert r.status_code == 403 and r.json_body["error"]["code"] == "account_pending"


def test_an_unactivated_account_is_deleted_at_its_deadline(api):
    create_account(api, "kate")
    advance_clock(settings.get().pending_account_ttl + 1)
    assert accounts.get_by_username("kate") is None
    # Its name is free again, for anyone with a token.
    assert create6(api, new_token(api, {**FCM, "pn_prid": "other"})).status_code == 200


# --- The desktop app's request token --------------------------------------------------------


def test_a_request_token_is_traded_once_a_person_validated_it(api):
    from chalicelib.accounts import app_signup

    r = api.http.post("/api/account_creation_request_tokens", headers={"User-Agent": ANDROID})
    body = is_json(r)
    assert r.status_code == 201
    request_token = body["token"]
    assert body["validation_url"].endswith("/creation_token/check/" + request_token)
    assert app_signup.request_token_state(request_token) == "pending"

    trade = {"account_creation_request_token": request_token}
    route = "/api/account_creation_tokens/using-account-creation-request-token"
    waiting = post_json(api, route, trade)
    # No `errors`: the desktop app asks again every 2 s.
    assert waiting.status_code == 404 and "errors" not in is_json(waiting)

    assert app_signup.validate_request_token(request_token) is True
    assert app_signup.request_token_state(request_token) == "validated"
    traded = post_json(api, route, trade)
    assert traded.status_code == 201
    token = is_json(traded)["token"]
    again = post_json(api, route, trade)  # a retry gets the same creation token
    assert (again.status_code, is_json(again)["token"]) == (201, token)
    assert app_signup.request_token_state(request_token) == "invalid"
    assert create6(api, token).status_code == 200
    field_error(post_json(api, route, {"account_creation_request_token": "nope"}),
                "account_creation_request_token")  # fmt: skip
    assert app_signup.validate_request_token("nope") is False


def test_request_tokens_are_budgeted_per_source(api):
    limit = settings.get().request_tokens_per_ip_hourly
    answers = [api.http.post("/api/account_creation_request_tokens").status_code
               for _ in range(limit + 1)]  # fmt: skip
    assert answers == [201] * limit + [429]


# --- accounts/{sip}/info and activate (5.1) ---------------------------------------------------


def test_info_tells_a_stranger_nothing(api):
    active_account(api)
    for name in ("kate", "nobody"):
        r = api.http.get(
            f"/api/accounts/{name}@example.org/info", headers={"Accept": "application/json"}
        )
        assert r.status_code == 404, name
        first = is_json(r)
        other = signed(api, "GET", f"/api/accounts/{name}@example.org/info", "bob", from_user="bob")
        assert (other.status_code, is_json(other)) == (404, first)
    # A From naming the account is challenged, whether it exists or not.
    for name in ("kate", "nobody"):
        r = api.http.get(f"/api/accounts/{name}@example.org/info",
                         headers={"From": f"sip:{name}@example.org"})  # fmt: skip
        assert r.status_code == 401 and len(challenges(r)) == 2
        wrong = signed(api, "GET", f"/api/accounts/{name}@example.org/info", name, "wrong one!")
        assert wrong.status_code == 401


def test_info_tells_the_account_itself_whether_it_is_activated(api):
    create_account(api, "kate")
    r = signed(api, "GET", "/api/accounts/kate@example.org/info", "kate")
    assert (r.status_code, is_json(r)) == (200, {"activated": False, "realm": None})
    signed(api, "POST", "/api/accounts/me/phone/request", "kate", body={"phone": KATE_PHONE})
    signed(api, "POST", "/api/accounts/me/phone", "kate", body={"code": last_code(KATE_PHONE)})
    r = signed(api, "GET", "/api/accounts/kate@example.org/info", "kate", algorithm="MD5")
    assert is_json(r) == {"activated": True, "realm": None}


def test_activate_email_confirms_the_phone_code_of_the_account_itself(api):
    create_account(api, "kate")
    signed(api, "POST", "/api/accounts/me/phone/request", "kate", body={"phone": KATE_PHONE})
    code = last_code(KATE_PHONE)
    wrong = f"{(int(code) + 1) % 10000:04d}"
    path = "/api/accounts/kate@example.org/activate/email"
    r = signed(api, "POST", path, "kate", body={"code": wrong})
    assert r.status_code == 404 and is_json(r)["message"]
    stranger = post_json(api, path, {"code": code})  # no From: as anyone else
    assert stranger.status_code == 404
    assert not accounts.get_by_username("kate").activated
    r = signed(api, "POST", path, "kate", body={"code": code})
    assert r.status_code == 200 and is_json(r)["activated"] is True
    assert accounts.get_by_username("kate").phone == KATE_PHONE


# --- The number -----------------------------------------------------------------------------


def test_the_number_is_linked_by_its_sms_code_and_activates_the_account(api):
    create_account(api, "kate")
    r = signed(api, "POST", "/api/accounts/me/phone/request", "kate", body={"phone": KATE_PHONE})
    assert (r.status_code, is_json(r)) == (200, {})
    code = last_code(KATE_PHONE)
    wrong = f"{(int(code) + 1) % 10000:04d}"
    assert "wrong code" in field_error(
        signed(api, "POST", "/api/accounts/me/phone", "kate", body={"code": wrong}), "code"
    )
    field_error(signed(api, "POST", "/api/accounts/me/phone", "kate", body={"code": "12"}), "code")
    r = signed(api, "POST", "/api/accounts/me/phone", "kate", body={"code": code})
    body = is_json(r)
    assert (r.status_code, body["phone"], body["activated"]) == (200, KATE_PHONE, True)
    # The same confirmation again (a lost answer) answers the account as it is.
    again = signed(api, "POST", "/api/accounts/me/phone", "kate", body={"code": code})
    assert again.status_code == 200 and is_json(again)["phone"] == KATE_PHONE


def test_an_expired_code_is_410(api):
    create_account(api, "kate")
    signed(api, "POST", "/api/accounts/me/phone/request", "kate", body={"phone": KATE_PHONE})
    code = last_code(KATE_PHONE)
    advance_clock(settings.get().code_ttl_seconds + 1)
    r = signed(api, "POST", "/api/accounts/me/phone", "kate", body={"code": code})
    assert (r.status_code, is_json(r)["message"]) == (410, "Expired code")


@pytest.mark.parametrize(
    ("phone", "field"),
    [("not a number", "phone"), ("+999123", "phone"), ("+33123456789", "phone"), (None, "phone")],
)
def test_bad_numbers_are_422_on_phone(api, phone, field):
    create_account(api, "kate")
    r = signed(api, "POST", "/api/accounts/me/phone/request", "kate", body={"phone": phone})
    field_error(r, field)


def test_link_codes_are_budgeted(api):
    create_account(api, "kate")
    assert signed(api, "POST", "/api/accounts/me/phone/request", "kate",
                  body={"phone": KATE_PHONE}).status_code == 200  # fmt: skip
    r = signed(api, "POST", "/api/accounts/me/phone/request", "kate", body={"phone": KATE_PHONE})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    pass_interval()


# --- Authentication: the account the From names, by Digest ------------------------------------


def test_accounts_me_needs_the_from_and_digest(api):
    active_account(api)
    r = api.http.get("/api/accounts/me", headers={"Accept": "application/json"})
    assert field_error(r, "from") == "The from field is required."
    r = api.http.get("/api/accounts/me", headers={"From": "sip:kate@example.org"})
    assert r.status_code == 401 and is_json(r)["message"] == "Unauthenticated."
    offered = [c.split("algorithm=")[1].split(",")[0] for c in challenges(r)]
    assert offered == ["SHA-256", "MD5"]  # Digest only: no Basic
    for algorithm in ("SHA-256", "MD5"):
        ok = signed(api, "GET", "/api/accounts/me", "kate", algorithm=algorithm)
        assert ok.status_code == 200 and is_json(ok)["username"] == "kate"


@pytest.mark.parametrize(
    ("path", "method", "body"),
    [
        ("/api/accounts/me", "GET", None),
        ("/api/accounts/me", "DELETE", None),
        ("/api/accounts/me/password", "POST", {"algorithm": "SHA-256", "old_password": "x",
                                                "password": "y"}),
        ("/api/accounts/me/phone/request", "POST", {"phone": "+33633333333"}),
        ("/api/accounts/me/phone", "POST", {"code": "1234"}),
        ("/api/accounts/me/devices", "GET", None),
        ("/api/accounts/me/devices/urn:uuid:x", "DELETE", {"device_uuid": "urn:uuid:x"}),
        ("/api/accounts/me/provision", "GET", None),
    ],
)  # fmt: skip
def test_a_stranger_is_challenged_and_refused_alike_on_every_route(api, path, method, body):
    active_account(api)
    wrong = signed(api, method, path, "kate", "not kate's password", body=body)
    nobody = signed(api, method, path, "nobody", "whatever pass", body=body)
    # Kate's From with bob's valid credentials: the claim fails.
    active_account(api, "bob", "+33633333333")
    bob_as_kate = signed(api, method, path, "bob", from_user="kate", body=body)
    for r in (wrong, nobody, bob_as_kate):
        assert r.status_code == 401, (r.status_code, r.body)
        assert is_json(r) == {"message": "Unauthenticated."}
    assert accounts.get_by_username("kate") is not None


def test_an_authorization_is_not_replayed(api):
    active_account(api)
    first = api.http.get("/api/accounts/me", headers={"From": "sip:kate@example.org"})
    from tests.flexiapi_support import digest_answer

    auth = digest_answer(challenges(first)[0], "kate", APP_PASSWORD, "GET", "/api/accounts/me")
    headers = {"From": "sip:kate@example.org", "Authorization": auth}
    assert api.http.get("/api/accounts/me", headers=headers).status_code == 200
    replayed = api.http.get("/api/accounts/me", headers=headers)
    assert replayed.status_code == 401 and "stale=true" in challenges(replayed)[0]


def test_password_guessing_is_limited_as_everywhere(api):
    active_account(api)
    for _ in range(settings.get().auth_pair_failures):
        assert signed(api, "GET", "/api/accounts/me", "kate", "guess guess").status_code == 401
    blocked = signed(api, "GET", "/api/accounts/me", "kate")
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1
    assert is_json(blocked)["message"]


# --- Password, deletion, devices, provisioning, ping -------------------------------------------


@pytest.mark.parametrize("order", ["flexiapi", "linphone-5.1"])
def test_password_change_takes_either_field_order(api, order):
    active_account(api)
    before = accounts.get_by_username("kate")
    new = "a brand new one"
    fields = (
        {"old_password": APP_PASSWORD, "password": new}
        if order == "flexiapi"
        else {"old_password": new, "password": APP_PASSWORD}
    )
    r = signed(api, "POST", "/api/accounts/me/password", "kate",
               body={"algorithm": "SHA-256", **fields})  # fmt: skip
    assert r.status_code == 200 and is_json(r)["username"] == "kate"
    after = accounts.get_by_username("kate")
    assert accounts.check_password(after, new) and not accounts.check_password(after, APP_PASSWORD)
    assert after.revoked_at > before.revoked_at  # what the old one signed in ends
    assert signed(api, "GET", "/api/accounts/me", "kate").status_code == 401
    assert signed(api, "GET", "/api/accounts/me", "kate", new).status_code == 200


def test_password_change_refusals(api):
    active_account(api)
    body = {"algorithm": "SHA-256", "old_password": "not it at all", "password": "not this either"}
    field_error(signed(api, "POST", "/api/accounts/me/password", "kate", body=body), "old_password")
    body = {"algorithm": "SHA-256", "old_password": APP_PASSWORD, "password": "short"}
    field_error(signed(api, "POST", "/api/accounts/me/password", "kate", body=body), "password")
    body = {"algorithm": "SHA-1", "old_password": APP_PASSWORD, "password": "long enough now"}
    field_error(signed(api, "POST", "/api/accounts/me/password", "kate", body=body), "algorithm")
    assert accounts.check_password(accounts.get_by_username("kate"), APP_PASSWORD)


def test_delete_me_answers_a_body_and_frees_the_name(api):
    active_account(api)
    r = signed(api, "DELETE", "/api/accounts/me", "kate")
    assert (r.status_code, is_json(r)) == (200, {})
    assert accounts.get_by_username("kate") is None
    assert accounts.find_by_phone(KATE_PHONE) is None


def test_devices_are_listed_as_an_object_and_signed_out(api):
    active_account(api)
    r = signed(api, "GET", "/api/accounts/me/devices", "kate")
    assert (r.status_code, is_json(r)) == (200, {})
    registrar.register(
        "kate@example.org",
        [registrar.ContactRequest(uri="sip:kate@192.0.2.1", instance='"<urn:uuid:abc-1>"')],
        call_id="c",
        cseq=1,
        expires_header=600,
        user_agent=ANDROID,
    )
    listed = is_json(signed(api, "GET", "/api/accounts/me/devices", "kate"))
    (uuid,) = listed
    assert uuid == "urn:uuid:abc-1"
    assert listed[uuid]["user_agent"] == ANDROID and listed[uuid]["uuid"] == uuid
    assert abs(clock.now() - _epoch(listed[uuid]["update_time"])) < 5
    gone = signed(
        api, "DELETE", f"/api/accounts/me/devices/{uuid}", "kate", body={"device_uuid": uuid}
    )
    assert (gone.status_code, is_json(gone)) == (200, True)
    again = signed(
        api, "DELETE", f"/api/accounts/me/devices/{uuid}", "kate", body={"device_uuid": uuid}
    )
    assert (again.status_code, is_json(again)) == (200, False)
    assert registrar.bindings("kate@example.org") == []


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").timestamp()


def test_provision_gives_a_single_use_link(api):
    active_account(api)
    r = signed(api, "GET", "/api/accounts/me/provision", "kate")
    body = is_json(r)
    assert r.status_code == 200 and body["username"] == "kate"
    token = body["provisioning_token"]
    assert body["provisioning_url"].endswith(f"/provisioning/{token}")
    doc = api.http.get(f"/provisioning/{token}", headers={"User-Agent": "LinphoneAndroid/4.6"})
    assert doc.status_code == 200 and b"<config" in doc.body


def test_a_pending_account_gets_no_provisioning_link(api):
    create_account(api, "kate")
    r = signed(api, "GET", "/api/accounts/me/provision", "kate")
    assert r.status_code == 403 and is_json(r)["message"]


def test_ping(api):
    r = api.http.get("/api/ping", headers={"Accept": "application/json"})
    assert (r.status_code, is_json(r)) == (200, {"message": "pong"})


def test_a_pending_account_is_no_user_in_anyones_list(api):
    from chalicelib.presence.resolve import Kind, Target, find_users

    create_account(api, "kate")
    kate = Target(Kind.ACCOUNT, "kate@example.org")
    assert find_users([kate]) == {}
    signed(api, "POST", "/api/accounts/me/phone/request", "kate", body={"phone": KATE_PHONE})
    signed(api, "POST", "/api/accounts/me/phone", "kate", body={"code": last_code(KATE_PHONE)})
    assert find_users([kate]) == {kate: "sip:kate@example.org"}


def test_logs_carry_no_names_numbers_tokens_or_device_tokens(api, log_records):
    active_account(api)
    link = is_json(signed(api, "GET", "/api/accounts/me/provision", "kate"))
    signed(api, "DELETE", "/api/accounts/me", "kate")
    logged = "\n".join(log_records)
    assert logged, "nothing logged at all"
    device = f"{FCM['pn_prid']}-kate"
    for secret in ("kate", KATE_PHONE, KATE_PHONE[1:], device, link["provisioning_token"]):
        assert secret not in logged, secret
