"""The web pages over HTTP without a browser (chalice's test client, in-process moto): every
flow, and what they answer to mistakes, as a browser without JavaScript sees them."""

from __future__ import annotations

import json
import re

import pytest

from chalicelib import accounts
from testkit.sms import last_code, sent_sms
from tests.accounts_support import PASSWORD, basic, pass_interval, post
from tests.web.support import Page, Visitor

ALICE = "+33612345678"
BOB = "+33698765432"


@pytest.fixture
def visitor(api) -> Visitor:
    return Visitor(api)


def sign_up(
    visitor: Visitor, e164: str = ALICE, username: str = "", password: str = PASSWORD
) -> Page:
    page = visitor.submit(visitor.get("/signup"), "/signup", phone=e164, username=username)
    assert page.status == 200, page.text()
    assert "We sent a code by SMS to" in page.text()
    page = visitor.submit(page, "/signup/confirm", code=last_code(e164), password=password)
    return visitor.follow(page)


def sign_in(visitor: Visitor, identifier: str, password: str = PASSWORD) -> Page:
    return visitor.submit(
        visitor.get("/signin"), "/signin", identifier=identifier, password=password
    )


def test_sign_up_with_a_username_signs_in_and_shows_the_account(visitor):
    page = sign_up(visitor, username="alice")
    assert page.status == 200
    text = page.text()
    assert "Your account is ready" in text
    assert "sip:alice@example.org" in text and "+33 6 12 34 56 78" in text
    account = accounts.get_by_username("alice")
    assert account is not None and account.phone == ALICE


def test_sign_up_without_a_username_is_named_by_the_number(visitor):
    page = sign_up(visitor)
    assert f"sip:{ALICE}@example.org" in page.text()


def test_a_national_number_is_read_in_the_country_chosen(visitor):
    page = visitor.submit(visitor.get("/signup"), "/signup", region="GB", phone="07400 123456")
    assert "+44 7400 123456" in page.text()


def test_sign_out_then_sign_in_with_the_username_or_the_number(visitor, api):
    sign_up(visitor, username="alice")
    page = visitor.submit(visitor.get("/account"), "/signout")
    assert visitor.follow(page).status == 200
    assert visitor.get("/account").location.endswith("/signin?next=%2Faccount")
    for identifier in ("alice", "+33 6 12 34 56 78", "06 12 34 56 78"):
        page = sign_in(visitor, identifier)
        assert page.status == 303 and page.location == "/account", page.text()
        visitor.submit(visitor.get("/account"), "/signout")


def test_sign_in_goes_back_to_the_page_asked_for(visitor):
    sign_up(visitor, username="alice")
    visitor.submit(visitor.get("/account"), "/signout")
    page = visitor.follow(visitor.get("/account/password"))
    page = visitor.submit(page, "/signin", identifier="alice", password=PASSWORD)
    assert page.location == "/account/password"


def test_a_wrong_code_is_shown_next_to_the_code_field_and_the_password_is_not_burnt(visitor):
    page = visitor.submit(visitor.get("/signup"), "/signup", phone=ALICE)
    code = last_code(ALICE)
    wrong = "0000" if code != "0000" else "1111"
    page = visitor.submit(page, "/signup/confirm", code=wrong, password=PASSWORD)
    assert page.status == 400
    assert "This code does not work" in page.errors()["code"]
    field = page.doc.get_element_by_id("code")
    assert field.get("aria-invalid") == "true" and "code-error" in field.get("aria-describedby")
    assert page.doc.xpath("//div[@role='alert']")  # the summary, announced
    assert page.doc.xpath("//title")[0].text.startswith("Error:")
    page = visitor.submit(page, "/signup/confirm", code=code, password="short")
    assert "Use 8 to 256 characters" in page.errors()["password"]
    page = visitor.submit(page, "/signup/confirm", code=code, password=PASSWORD)
    assert page.status == 303


def test_empty_fields_are_named(visitor):
    page = visitor.submit(visitor.get("/signup"), "/signup", phone="")
    assert page.status == 400 and page.errors() == {"phone": "Error: Fill this in."}
    page = visitor.submit(visitor.get("/signin"), "/signin", identifier="", password="")
    assert set(page.errors()) == {"identifier", "password"}


def test_bad_numbers_and_usernames_are_told_next_to_their_field(visitor):
    page = visitor.submit(visitor.get("/signup"), "/signup", phone="12", username="A!")
    assert page.status == 400 and "phone" in page.errors()
    page = visitor.submit(visitor.get("/signup"), "/signup", phone=ALICE, username="A!")
    assert "username" in page.errors()
    page = visitor.submit(visitor.get("/signup"), "/signup", phone="+81 90 1234 5678")
    assert page.status == 403 and "cannot send SMS" in page.errors()["phone"]
    page = visitor.submit(visitor.get("/signup"), "/signup", phone="+33 1 23 45 67 89")
    assert page.status == 403 and "mobile" in page.errors()["phone"]
    assert not sent_sms()


def test_a_username_taken_is_told_after_the_code_and_the_form_starts_again(visitor, api):
    sign_up(Visitor(api), BOB, username="alice")
    page = visitor.submit(visitor.get("/signup"), "/signup", phone=ALICE, username="alice")
    assert "We sent a code" in page.text()  # nothing told before the number is proven
    page = visitor.submit(page, "/signup/confirm", code=last_code(ALICE), password=PASSWORD)
    assert page.status == 409 and "taken" in page.errors()["username"]
    assert (
        page.form("/signup").xpath(".//input[@name='phone']")[0].get("value") == "+33 6 12 34 56 78"
    )
    pass_interval()
    page = visitor.submit(page, "/signup", username="alice2")
    page = visitor.submit(page, "/signup/confirm", code=last_code(ALICE), password=PASSWORD)
    assert visitor.follow(page).status == 200
    assert accounts.get_by_username("alice2").phone == ALICE


def test_send_a_new_code(visitor):
    page = visitor.submit(visitor.get("/signup"), "/signup", phone=ALICE)
    first = last_code(ALICE)
    pass_interval()
    page = visitor.submit(page, "/signup", again="1")
    assert "We sent a new code" in page.text()
    assert len([n for n, _ in sent_sms() if n == ALICE]) == 2
    page = visitor.submit(page, "/signup/confirm", code=last_code(ALICE), password=PASSWORD)
    assert page.status == 303 or first == last_code(ALICE)


def test_too_many_code_requests_answer_429_with_the_wait(visitor):
    page = visitor.submit(visitor.get("/signup"), "/signup", phone=ALICE)
    page = visitor.submit(page, "/signup", again="1")  # within the per-number interval
    assert page.status == 429 and page.headers["Retry-After"]
    assert "Too many requests for now. Try again in a minute." in page.summary()


def test_forgotten_password_sets_a_new_one_and_ends_the_old_sessions(visitor, api):
    sign_up(visitor, username="alice")
    pass_interval()
    other = Visitor(api)
    page = other.submit(other.get("/recover"), "/recover", phone=ALICE)
    assert "We sent a code" in page.text()
    page = other.submit(page, "/recover/confirm", code=last_code(ALICE), password="a new password")
    assert other.follow(page).status == 200
    assert "Your password is changed" in other.get("/account?done=recovered").text()
    assert visitor.get("/account").status == 303  # the first browser is signed out
    assert sign_in(visitor, "alice").status == 401
    assert sign_in(visitor, "alice", "a new password").status == 303


def test_recovery_of_a_number_without_account_creates_nothing(visitor):
    page = visitor.submit(visitor.get("/recover"), "/recover", phone=ALICE)
    assert "We sent a code" in page.text()  # the same as for a number with an account
    page = visitor.submit(page, "/recover/confirm", code=last_code(ALICE), password=PASSWORD)
    assert page.status == 404 and "No account has this number" in " ".join(page.summary())
    assert accounts.find_by_phone(ALICE) is None


def test_discoverable_on_and_off(visitor):
    page = sign_up(visitor, username="alice")
    assert page.doc.get_element_by_id("discoverable-yes").get("checked") is not None
    page = visitor.follow(visitor.submit(page, "/account/discoverable", discoverable="no"))
    assert "Saved." in page.text()
    assert accounts.get_by_username("alice").discoverable is False
    assert page.doc.get_element_by_id("discoverable-no").get("checked") is not None
    visitor.submit(page, "/account/discoverable", discoverable="yes")
    assert accounts.get_by_username("alice").discoverable is True
    assert visitor.submit(page, "/account/discoverable", discoverable="maybe").status == 400


def test_password_change_needs_the_current_one_and_keeps_this_browser_only(visitor, api):
    sign_up(visitor, username="alice")
    other = Visitor(api)
    sign_in(other, "alice")
    page = visitor.get("/account/password")
    page = visitor.submit(page, "/account/password", current="wrong one", password="a new password")
    assert page.status == 401 and "not your current password" in page.errors()["current"]
    page = visitor.submit(page, "/account/password", current=PASSWORD, password="a new password")
    assert visitor.follow(page).status == 200
    assert "Your password is changed" in visitor.get("/account?done=password").text()
    assert other.get("/account").status == 303
    assert api.http.get("/v1/accounts/me", headers=basic("alice")).status_code == 401
    assert (
        api.http.get("/v1/accounts/me", headers=basic("alice", "a new password")).status_code == 200
    )


def test_change_the_number_with_a_code_then_remove_it(visitor, api):
    sign_up(visitor, username="alice")
    page = visitor.submit(visitor.get("/account/number"), "/account/number", phone="06 98 76 54 32")
    assert "+33 6 98 76 54 32" in page.text()
    page = visitor.submit(page, "/account/number/confirm", code=last_code(BOB))
    page = visitor.follow(page)
    assert "Your number is changed" in page.text() and "+33 6 98 76 54 32" in page.text()
    assert accounts.get_by_username("alice").phone == BOB
    assert accounts.find_by_phone(ALICE) is None
    page = visitor.follow(visitor.submit(visitor.get("/account/number"), "/account/number/remove"))
    assert "Your number is removed" in page.text()
    assert accounts.get_by_username("alice").phone is None


def test_the_number_already_linked_is_told(visitor):
    sign_up(visitor, username="alice")
    page = visitor.submit(visitor.get("/account/number"), "/account/number", phone=ALICE)
    assert page.status == 409 and "already on your account" in page.errors()["phone"]


def test_delete_needs_the_password_then_frees_everything(visitor, api):
    sign_up(visitor, username="alice")
    page = visitor.get("/account/delete")
    page = visitor.submit(page, "/account/delete", password="wrong one")
    assert page.status == 401 and accounts.get_by_username("alice") is not None
    page = visitor.submit(page, "/account/delete", password=PASSWORD)
    page = visitor.follow(page)
    assert "Your account is deleted" in page.text()
    assert accounts.get_by_username("alice") is None and accounts.find_by_phone(ALICE) is None
    assert visitor.get("/account").status == 303
    assert api.http.get("/v1/accounts/me", headers=basic("alice")).status_code == 401


def test_a_get_of_a_page_that_only_acts_goes_back_to_its_form(visitor):
    assert visitor.get("/signup/confirm").location == "/signup"
    assert visitor.get("/account/number/confirm").location == "/account/number"
    assert visitor.get("/signout").location == "/"


def test_signed_in_visitors_skip_the_signed_out_pages(visitor):
    sign_up(visitor)
    for path in ("/", "/signin", "/signup", "/recover"):
        assert visitor.get(path).location == "/account", path


def test_a_rest_sign_up_is_usable_on_the_web(visitor, api):
    r = post(api, "/v1/signup/phone", {"phone": ALICE, "username": "alice"})
    assert r.status_code == 202
    post(
        api,
        "/v1/signup/phone/confirm",
        {"phone": ALICE, "code": last_code(ALICE), "password": PASSWORD},
    )
    assert sign_in(visitor, "alice").status == 303
    assert re.search(r"sip:alice@example\.org", visitor.get("/account").text())


def test_devices_are_listed_with_their_app_and_one_can_be_signed_out(visitor):
    from chalicelib.live import registrar

    sign_up(visitor, username="alice")
    assert "No device is signed in" in visitor.get("/account/devices").text()
    aor = accounts.aor_for("alice")
    for n, agent in enumerate(("LinphoneAndroid/6.0 (Pixel 8) LinphoneSDK/5.4", "<b>baresip</b>")):
        registrar.register(
            aor,
            [
                registrar.ContactRequest(
                    uri=f"sip:alice@192.0.2.{n}:5060", instance=f"<urn:uuid:{n}>"
                )
            ],
            call_id=f"c{n}",
            cseq=1,
            expires_header=600,
            user_agent=agent,
        )
    page = visitor.get("/account/devices")
    names = [h.text_content() for h in page.doc.xpath("//ul[@class='devices']//h2")]
    assert sorted(names) == ["<b>baresip</b>", "Pixel 8"]  # what the phone sent, escaped
    assert "<b>baresip</b>" not in page.body and "calls and online status" in page.text()
    form = next(
        f for f in page.doc.forms if f.xpath(".//input[@name='device' and @value='urn:uuid:0']")
    )
    page = visitor.post("/account/devices", dict(form.fields))
    assert page.location == "/account/devices?done=device_signed_out"
    page = visitor.follow(page)
    assert "The device is signed out" in page.text() and "Pixel 8" not in page.text()
    assert [b.instance for b in registrar.bindings(aor)] == ["<urn:uuid:1>"]
    token = page.form("/account/devices").fields["csrf"]
    page = visitor.post("/account/devices", {"csrf": token, "device": "urn:uuid:0"})
    assert page.location.endswith("done=device_gone")


def test_the_setup_page_gives_the_settings_and_a_single_use_link(visitor, api):
    from chalicelib import settings

    sign_up(visitor, username="alice")
    page = visitor.get("/setup")
    text = page.text()
    assert "sip:alice@example.org" in text
    assert settings.get().provisioned_proxy in text and settings.get().provisioned_rls_uri in text
    assert "Your account's password" in text and not page.doc.xpath("//img")
    page = visitor.submit(page, "/setup")
    assert page.status == 200
    link = page.doc.get_element_by_id("provisioning-link").text_content().strip()
    assert link.startswith("http://127.0.0.1:8000/provisioning/")
    (qr,) = page.doc.xpath("//img[@class='qr']")
    assert qr.get("src").startswith("data:image/svg+xml;base64,") and qr.get("alt")
    document = api.http.get(link.removeprefix("http://127.0.0.1:8000"), headers={"User-Agent": "x"})
    assert document.status_code == 200
    body = document.body.decode()
    assert "<config" in body and accounts.get_by_username("alice").ha1_sha256 in body
    assert PASSWORD not in body
    again = api.http.get(link.removeprefix("http://127.0.0.1:8000"), headers={"User-Agent": "y"})
    assert again.status_code == 404  # used once
    assert visitor.get("/setup").status == 200  # a GET makes no link


def test_the_request_page_validates_an_app_request_once_proven(visitor):
    from chalicelib.accounts import app_signup
    from tests.web.test_human import solved

    token = app_signup.request_token(source_ip="192.0.2.1").value
    page = visitor.get(f"/creation_token/check/{token}")
    form = page.form(f"/creation_token/check/{token}")
    challenge = json.loads(form.get("data-human"))
    assert form.xpath(".//button[@disabled]")  # until the script is there to do the work
    page = visitor.submit(page, f"/creation_token/check/{token}", altcha="")
    assert page.status == 400 and "could not check" in " ".join(page.summary())
    assert app_signup.request_token_state(token) == "pending"
    other = app_signup.request_token(source_ip="192.0.2.1").value
    foreign = solved(
        json.loads(
            visitor.get(f"/creation_token/check/{other}")
            .form(f"/creation_token/check/{other}")
            .get("data-human")
        )
    )
    page = visitor.submit(page, f"/creation_token/check/{token}", altcha=foreign)
    assert page.status == 400 and app_signup.request_token_state(token) == "pending"
    page = visitor.get(f"/creation_token/check/{token}")
    page = visitor.submit(
        page,
        f"/creation_token/check/{token}",
        altcha=solved(json.loads(page.form(f"/creation_token/check/{token}").get("data-human"))),
    )
    assert page.location == f"/creation_token/check/{token}"
    assert "Done. Go back to the app" in visitor.follow(page).text()
    assert app_signup.request_token_state(token) == "validated"
    assert app_signup.token_for_request(token).value
    assert challenge["maxNumber"] > 0


def test_an_unknown_request_link_says_so(visitor):
    page = visitor.get("/creation_token/check/nope")
    assert page.status == 404 and "This link no longer works" in page.text()


def test_an_account_made_by_an_app_adds_its_number_before_any_app_link(visitor):
    from chalicelib import clock

    accounts.create(
        "frank",
        accounts.credentials_from_password("frank", PASSWORD),
        pending_until=clock.now_int() + 3600,
    )
    assert sign_in(visitor, "frank").status == 303
    page = visitor.submit(visitor.get("/setup"), "/setup")
    assert page.status == 403 and "Add a phone number to your account first" in page.text()
    page = visitor.submit(visitor.get("/account/number"), "/account/number", phone=ALICE)
    visitor.submit(page, "/account/number/confirm", code=last_code(ALICE))
    assert accounts.get_by_username("frank").activated
    assert visitor.submit(visitor.get("/setup"), "/setup").status == 200
