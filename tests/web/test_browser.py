"""Every web page flow in a real browser (Debian's chromium through Playwright) against a
`make run` stack: sign-up with the SMS code read from moto, sign-in and out, the account's
settings, a new number, a forgotten password, devices signed out, the account deleted with its
SIP registration and list subscription ended; keyboard only and without JavaScript. Each page
passes axe-core (light and dark) and is photographed at phone and desktop widths."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from typing import Any

import pytest

from tests.web.browser import DOMAIN, Browsers, Phone, Stack, look

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse"
NEW_PASSWORD = "battery staple"


def expect_text(page: Any, text: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator("main")).to_contain_text(text)


def sign_up(page: Any, stack: Stack, number: str, *, username: str = "", shots: Any = None) -> None:
    """The sign-up a newcomer does, from the home page."""
    page.goto(stack.url("/"))
    if shots:
        look(page, "home", shots)
    page.get_by_role("link", name="Create an account").first.click()
    page.get_by_label("Mobile phone number").fill(number)
    if username:
        page.get_by_label("Username").fill(username)
    if shots:
        look(page, "signup", shots)
    sent = len(stack.sms(_e164(number)))
    page.get_by_role("button", name="Send me a code").click()
    expect_text(page, "We sent a code by SMS to")
    page.get_by_label("Code from the SMS").fill(stack.code(_e164(number), after=sent))
    page.get_by_label("Choose a password").fill(PASSWORD)
    if shots:
        look(page, "signup-code", shots)
    page.get_by_role("button", name="Create my account").click()
    expect_text(page, "Your account is ready")


def _e164(number: str) -> str:
    digits = re.sub(r"[^\d+]", "", number)
    return digits if digits.startswith("+") else "+33" + digits.lstrip("0")


def sign_in(page: Any, stack: Stack, identifier: str, password: str) -> None:
    page.goto(stack.url("/signin"))
    page.get_by_label("Username or phone number").fill(identifier)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_a_newcomer_signs_up_and_changes_everything(stack, browsers: Browsers):
    page = browsers.person()
    shots = browsers.shots
    sign_up(page, stack, "06 12 00 00 01", username="alice", shots=shots)
    expect_text(page, f"sip:alice@{DOMAIN}")
    expect_text(page, "+33 6 12 00 00 01")
    look(page, "account", shots)
    session = next(c for c in page.context.cookies() if c["name"] == "session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert not session["secure"]  # plain HTTP on loopback; Secure and __Host- on HTTPS

    # Set up a phone: a QR code and a link that configures the app, once.
    page.get_by_role("link", name="Set up an app").first.click()
    expect_text(page, "Other SIP apps")
    look(page, "setup", shots)
    page.get_by_role("button", name="Make a QR code for a phone").click()
    assert page.get_by_role("img", name="QR code of your set-up link").is_visible()
    link = page.locator("#provisioning-link").inner_text().strip()
    assert page.get_by_role("button", name="Copy the link").is_visible()
    look(page, "setup-link", shots)
    document = urllib.request.urlopen(
        urllib.request.Request(link, headers={"User-Agent": "LinphoneAndroid/6.0"}), timeout=10
    ).read()
    assert b"<config" in document and b"sip:alice@" in document
    page.goto(stack.url("/account"))

    # Nobody finds me by my number, then they do again.
    page.get_by_label("No: nobody finds me by my number").check()
    page.get_by_role("button", name="Save").click()
    expect_text(page, "Saved.")
    assert page.get_by_label("No: nobody finds me by my number").is_checked()
    page.get_by_label("Yes: their app shows").check()
    page.get_by_role("button", name="Save").click()
    assert page.get_by_label("Yes: their app shows").is_checked()

    # A new password: the wrong current one is told next to its field, and announced.
    page.get_by_role("link", name="Change your password").click()
    look(page, "password", shots)
    page.get_by_label("Current password").fill("not it at all")
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change my password").click()
    assert (
        page.locator("#current-error").inner_text().endswith("This is not your current password.")
    )
    assert page.get_by_label("Current password").get_attribute("aria-invalid") == "true"
    assert page.evaluate("document.activeElement.getAttribute('role')") == "alert"
    look(page, "password-error", shots)
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change my password").click()
    expect_text(page, "Your password is changed")

    # Another number, proven by its code.
    page.get_by_role("link", name="Change or remove your number").click()
    look(page, "number", shots)
    page.get_by_label("Mobile phone number").fill("+33 6 12 00 00 02")
    page.get_by_role("button", name="Send me a code").click()
    page.get_by_label("Code from the SMS").fill(stack.code("+33612000002"))
    look(page, "number-code", shots)
    page.get_by_role("button", name="Use this number").click()
    expect_text(page, "Your number is changed")
    expect_text(page, "+33 6 12 00 00 02")

    # Signed out, then in again with the new number and the new password.
    page.get_by_role("button", name="Sign out").click()
    expect_text(page, "You are signed out")
    look(page, "signin", shots)
    sign_in(page, stack, "+33 6 12 00 00 01", NEW_PASSWORD)  # the old number is no one's now
    expect_text(page, "The username, number or password is wrong.")
    sign_in(page, stack, "06 12 00 00 02", NEW_PASSWORD)
    expect_text(page, f"sip:alice@{DOMAIN}")


def test_a_forgotten_password_is_replaced_with_the_numbers_code(stack, browsers: Browsers):
    first = browsers.person()
    sign_up(first, stack, "+33 6 12 00 00 11")
    page = browsers.person()  # the same person on another device, password forgotten
    time.sleep(1.1)  # SMS_PER_NUMBER_INTERVAL
    page.goto(stack.url("/signin"))
    page.get_by_role("link", name="Forgot your password?").click()
    look(page, "recover", browsers.shots)
    page.get_by_label("Mobile phone number").fill("+33 6 12 00 00 11")
    page.get_by_role("button", name="Send me a code").click()
    expect_text(page, "We sent a code by SMS to +33 6 12 00 00 11")
    page.get_by_label("Code from the SMS").fill(stack.code("+33612000011", after=1))
    page.get_by_label("New password").fill(NEW_PASSWORD)
    look(page, "recover-code", browsers.shots)
    page.get_by_role("button", name="Set my new password").click()
    expect_text(page, "Your password is changed")
    first.reload()
    assert "/signin" in first.url  # the other browser's session ended with the old password


def test_devices_are_listed_and_deleting_the_account_ends_their_sip_sessions(
    stack, browsers: Browsers
):
    page = browsers.person()
    sign_up(page, stack, "+33 6 12 00 00 21", username="carol")
    pixel = Phone(stack, "carol", PASSWORD, "LinphoneAndroid/6.0.1 (Pixel 8) LinphoneSDK/5.4")
    desk = Phone(stack, "carol", PASSWORD, "baresip v3.10.1 (x86_64/Linux)")
    try:
        assert pixel.register() == 200
        assert pixel.subscribe(["+33612000021", "+33612000099"]) == 200
        assert pixel.notify() is not None  # the full state
        assert desk.register() == 200
        page.get_by_role("link", name="Signed-in devices").click()
        expect_text(page, "Pixel 8")
        expect_text(page, "baresip v3.10.1 (x86_64/Linux)")
        expect_text(page, "your contact list")
        look(page, "devices", browsers.shots)

        # Sign the desk phone out: its registration ends, the Pixel stays.
        desk_entry = page.locator("ul.devices > li").filter(has_text="baresip")
        desk_entry.get_by_role("button", name="Sign out this device").click()
        expect_text(page, "The device is signed out")
        assert "baresip" not in page.locator("main").inner_text()
        agents = {i["user_agent"]["S"] for i in stack.registrations(f"carol@{DOMAIN}")}
        assert agents == {pixel.agent}

        # Delete the account: the Pixel's subscription gets its final NOTIFY and its
        # registration is gone.
        page.goto(stack.url("/account"))
        page.get_by_role("link", name="Delete your account").click()
        look(page, "delete", browsers.shots)
        page.get_by_label("Your password").fill(PASSWORD)
        page.get_by_role("button", name="Delete my account").click()
        expect_text(page, "Your account is deleted")
        assert pixel.final_notify() is not None
        assert stack.registrations(f"carol@{DOMAIN}") == []
        assert pixel.register() != 200  # nothing left to sign in to
    finally:
        pixel.close()
        desk.close()


def test_keyboard_only(stack, browsers: Browsers):
    page = browsers.person()
    page.goto(stack.url("/signup"))
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to the main content"
    page.keyboard.press("Enter")
    # Through the form to its button, typing as we go; nothing needs a mouse.
    for _ in range(20):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.id || document.activeElement.textContent")
        if focused == "phone":
            page.keyboard.type("+33 6 12 00 00 31")
        if focused == "Send me a code":
            break
    else:
        raise AssertionError("the button was never reached with Tab")
    page.keyboard.press("Enter")
    expect_text(page, "We sent a code by SMS to +33 6 12 00 00 31")
    page.keyboard.press("Tab")  # the skip link first, as on every page
    page.get_by_label("Code from the SMS").focus()
    page.keyboard.type(stack.code("+33612000031"))
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect_text(page, "Your account is ready")


def test_empty_fields_are_told_next_to_them_and_the_summary_is_focused(stack, browsers: Browsers):
    page = browsers.person()
    page.goto(stack.url("/signin"))
    page.get_by_role("button", name="Sign in").click()
    summary = page.get_by_role("alert")
    assert "There is a problem" in summary.inner_text()
    assert page.evaluate("document.activeElement.classList.contains('error-summary')")
    field = page.get_by_label("Username or phone number")
    assert field.get_attribute("aria-invalid") == "true"
    described = field.get_attribute("aria-describedby").split()
    assert page.locator(f"#{described[-1]}").inner_text().endswith("Fill this in.")
    assert page.title().startswith("Error:")
    page.get_by_role("link", name="Fill this in.").first.click()  # the summary links to it
    assert page.evaluate("document.activeElement.id") == "identifier"
    look(page, "signin-error", browsers.shots)


def test_everything_works_without_javascript(stack, browsers: Browsers):
    page = browsers.person(javascript=False)
    sign_up(page, stack, "+33 6 12 00 00 41", username="dave")
    page.get_by_role("link", name="Change your password").click()
    assert page.locator("button", has_text="Show").count() == 0  # the script's only
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change my password").click()
    expect_text(page, "Your password is changed")
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, stack, "dave", NEW_PASSWORD)
    expect_text(page, f"sip:dave@{DOMAIN}")


def test_passwords_can_be_shown_with_javascript(stack, browsers: Browsers):
    page = browsers.person()
    page.goto(stack.url("/signin"))
    field = page.get_by_label("Password", exact=True)
    field.fill("hunter22")
    show = page.get_by_role("button", name="Show")
    assert show.get_attribute("aria-pressed") == "false"
    show.click()
    assert field.get_attribute("type") == "text"
    assert page.get_by_role("button", name="Hide").get_attribute("aria-pressed") == "true"


def test_a_form_posted_from_another_site_changes_nothing(stack, browsers: Browsers):
    """A page elsewhere (another origin on this machine) that submits a form to the account
    on the victim's behalf: refused for want of the form's token (403), nothing changes."""
    import http.server
    import threading

    from testkit.ports import free_port

    page = browsers.person()
    sign_up(page, stack, "+33 6 12 00 00 51", username="erin")
    target = stack.url("/account/discoverable")
    trap = (
        f'<form id="f" method="post" action="{target}">'
        '<input name="discoverable" value="no"></form>'
        '<script>document.getElementById("f").submit()</script>'
    ).encode()

    class Trap(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(trap)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", free_port()), Trap)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with page.expect_navigation(url=target):
            page.goto(f"http://127.0.0.1:{server.server_port}/")
        expect_text(page, "This form has expired")
    finally:
        server.shutdown()
        server.server_close()
    page.goto(stack.url("/account"))
    assert page.get_by_label("Yes: their app shows").is_checked()


def test_security_headers_reach_the_browser(stack, browsers: Browsers):
    page = browsers.person()
    response = page.goto(stack.url("/signin"))
    headers = response.all_headers()
    assert headers["content-security-policy"].startswith("default-src 'none'")
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["cache-control"] == "no-store"
    form = next(c for c in page.context.cookies() if c["name"] == "form")
    assert form["httpOnly"] and form["sameSite"] == "Strict"


def test_an_idle_session_ends(playwright, browsers: Browsers):
    from tests.web.browser import start_stack
    from tests.web.conftest import SHARED_STACK

    short = start_stack(**SHARED_STACK, WEB_SESSION_IDLE="3")
    try:
        page = browsers.person()
        sign_up(page, short, "+33 6 12 00 00 61")
        page.reload()
        expect_text(page, "Your account")
        time.sleep(4)  # real time: the stack's idle timeout (3 s) lapses in its own process
        page.reload()
        assert "/signin?next=%2Faccount" in page.url
        expect_text(page, "Sign in")
    finally:
        short.stop()


def test_an_app_without_push_gets_its_account_request_validated(stack, browsers: Browsers):
    def api(path: str, body: dict) -> tuple[int, dict]:
        request = urllib.request.Request(
            stack.url(path), json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as refused:
            return refused.code, json.loads(refused.read() or b"{}")

    status, asked = api("/api/account_creation_request_tokens", {})
    assert status == 201
    trade = "/api/account_creation_tokens/using-account-creation-request-token"
    assert api(trade, {"account_creation_request_token": asked["token"]})[0] == 404  # not yet
    page = browsers.person()
    page.goto(asked["validation_url"])
    expect_text(page, "An app asks to create an account")
    look(page, "request", browsers.shots)
    page.get_by_role("button", name="Confirm and go back to the app").click()
    expect_text(page, "Done. Go back to the app")
    look(page, "request-done", browsers.shots)
    status, created = api(trade, {"account_creation_request_token": asked["token"]})
    assert status == 201 and created["token"]


def test_the_request_page_says_it_needs_javascript_without_it(stack, browsers: Browsers):
    request = urllib.request.Request(
        stack.url("/api/account_creation_request_tokens"), b"{}",
        {"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as answer:
        asked = json.loads(answer.read())
    page = browsers.person(javascript=False)
    page.goto(asked["validation_url"])
    expect_text(page, "This check needs JavaScript")
    assert page.get_by_role("button", name="Confirm and go back to the app").is_disabled()
