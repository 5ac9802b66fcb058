"""The web pages' safety rules over HTTP: headers on every answer, cookie attributes, CSRF on
every form, sessions that expire and end with the account's credentials, the REST API's
limits, and a stranger who learns nothing about who has an account."""

from __future__ import annotations

import json
import re
from urllib.parse import urlencode

import pytest

from chalicelib import accounts, settings, tables
from chalicelib.accounts import sessions
from chalicelib.aws import client
from chalicelib.web import catalogue, pages, security
from testkit.sms import last_code, sent_sms
from tests.accounts_support import PASSWORD, pass_interval
from tests.conftest import ROOT, advance_clock, reset_caches
from tests.web.support import FORM, Page, Visitor
from tests.web.test_pages import ALICE, BOB, sign_in, sign_up

PAGES_SHOWN = ["/", "/signup", "/signin", "/recover"]
SIGNED_IN_PAGES = [
    "/account",
    "/account/password",
    "/account/number",
    "/account/devices",
    "/account/delete",
    "/setup",
]


@pytest.fixture
def visitor(api) -> Visitor:
    return Visitor(api)


def _assert_safe_headers(page: Page) -> None:
    csp = page.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "default-src 'none'" in csp and "form-action 'self'" in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "same-origin"
    assert page.headers["X-Content-Type-Options"] == "nosniff"


# --- Headers ----------------------------------------------------------------------------------


def test_every_page_and_file_carries_the_security_headers(visitor):
    for path in PAGES_SHOWN:
        page = visitor.get(path)
        assert page.status == 200, path
        _assert_safe_headers(page)
        assert page.headers["Cache-Control"] == "no-store"
    sign_up(visitor, username="alice")
    for path in SIGNED_IN_PAGES:
        page = visitor.get(path)
        assert page.status == 200, path
        _assert_safe_headers(page)
        assert page.headers["Cache-Control"] == "no-store"  # nothing of an account is cached
    for name in ("app.css", "app.js"):
        _assert_safe_headers(visitor.get(f"/static/{name}"))
    _assert_safe_headers(visitor.get("/static/nothing.js"))


def test_no_page_has_inline_script_or_style(visitor):
    """The CSP forbids them: any would be dead on the page."""
    bodies = [visitor.get(p).body for p in PAGES_SHOWN]
    sign_up(visitor, username="alice")
    bodies += [visitor.get(p).body for p in SIGNED_IN_PAGES]
    for body in bodies:
        assert not re.search(r"<script(?![^>]*\bsrc=)", body), body[:300]
        assert (
            "<style" not in body
            and " style=" not in body
            and " on"
            not in re.sub(r"\s(onl(y|ine)|once|one|on\b)", "", re.sub(r">[^<]*<", "><", body))
        )


def test_https_gets_host_prefixed_secure_cookies_and_hsts(api):
    for headers in ({"X-Forwarded-Proto": "https"}, {}):
        visitor = Visitor(api, host="abc123.execute-api.eu-west-1.amazonaws.com", extra=headers)
        page = visitor.get("/signup")
        assert page.headers["Strict-Transport-Security"].startswith("max-age=")
        (cookie,) = visitor.set_cookies
        assert cookie.startswith("__Host-form=")
        assert {"Secure", "HttpOnly", "SameSite=Strict", "Path=/"} <= set(cookie.split("; "))
        page = visitor.submit(page, "/signup", phone=ALICE)
        page = visitor.submit(page, "/signup/confirm", code=last_code(ALICE), password=PASSWORD)
        session = visitor.set_cookies[-1]
        assert session.startswith("__Host-session=")
        assert {"Secure", "HttpOnly", "SameSite=Strict", "Path=/"} <= set(session.split("; "))
        assert "Max-Age" not in session  # gone with the browser; the server's expiry holds
        assert visitor.get("/account").status == 200
        accounts.delete(accounts.aor_for(ALICE))
        pass_interval()


def test_loopback_http_gets_cookies_without_secure_and_no_hsts(visitor):
    page = visitor.get("/signup")
    assert "Strict-Transport-Security" not in page.headers
    (cookie,) = visitor.set_cookies
    assert cookie.startswith("form=") and "Secure" not in cookie
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= set(cookie.split("; "))
    sign_up(visitor)
    session = next(c for c in visitor.set_cookies if c.startswith("session="))
    assert "Secure" not in session and "HttpOnly" in session and "SameSite=Strict" in session


@pytest.mark.parametrize(
    ("headers", "secure"),
    [
        ({"host": "127.0.0.1:8000"}, False),
        ({"host": "localhost:8000"}, False),
        ({"host": "[::1]:8000"}, False),
        ({"host": "127.0.0.2"}, False),
        ({"host": "example.org"}, True),
        ({"host": "10.0.0.5:8000"}, True),
        ({"host": "127.0.0.1:8000", "x-forwarded-proto": "https"}, True),
        ({"host": "example.org", "x-forwarded-proto": "http"}, False),
        ({}, True),
    ],
)
def test_which_requests_are_https(headers, secure):
    assert security.is_secure(headers) is secure


def test_links_follow_api_gateways_stage_path():
    from types import SimpleNamespace

    from chalicelib.web.site import base_path

    def request(path: str) -> SimpleNamespace:
        return SimpleNamespace(context={"path": path})

    assert base_path(request("/api/signup"), "/signup") == "/api"
    assert base_path(request("/api/"), "/") == "/api"
    assert base_path(request("/api"), "/") == "/api"
    assert base_path(request("/signup"), "/signup") == ""
    assert base_path(request("/a/b/account/number"), "/account/number") == "/a/b"
    assert base_path(request('/x"y/signup'), "/signup") == ""  # nothing odd gets into a link


# --- CSRF --------------------------------------------------------------------------------------


def test_a_form_without_its_token_does_nothing(visitor):
    visitor.get("/signup")  # the forms cookie, but no token
    page = visitor.post("/signup", {"phone": ALICE})
    assert page.status == 403 and "This form has expired" in page.text()
    assert not sent_sms()


def test_a_token_of_another_browser_does_nothing(api):
    attacker, victim = Visitor(api), Visitor(api)
    token = attacker.get("/signup").form("/signup").xpath(".//input[@name='csrf']")[0].get("value")
    victim.get("/signup")
    page = victim.post("/signup", {"phone": ALICE, "region": "FR", "csrf": token})
    assert page.status == 403 and not sent_sms()


def test_a_post_without_cookies_does_nothing(api):
    page = Visitor(api).post("/signin", {"identifier": "alice", "password": PASSWORD, "csrf": "x"})
    assert page.status == 403


def test_signed_in_forms_are_bound_to_the_session(api, visitor):
    sign_up(visitor, username="alice")
    form = visitor.get("/account").form("/account/discoverable")
    token = form.xpath(".//input[@name='csrf']")[0].get("value")
    assert visitor.post("/account/discoverable", {"discoverable": "no"}).status == 403
    assert accounts.get_by_username("alice").discoverable is True
    # Another signed-in browser of the same account has a token of its own.
    other = Visitor(api)
    sign_in(other, "alice")
    assert other.post("/account/discoverable", {"discoverable": "no", "csrf": token}).status == 403
    assert accounts.get_by_username("alice").discoverable is True
    assert (
        visitor.post("/account/discoverable", {"discoverable": "no", "csrf": token}).status == 303
    )
    assert accounts.get_by_username("alice").discoverable is False


def test_every_form_of_every_page_carries_a_token(visitor):
    bodies = [visitor.get(p) for p in PAGES_SHOWN]
    bodies.append(visitor.submit(visitor.get("/signup"), "/signup", phone=ALICE))
    page = visitor.submit(bodies[-1], "/signup/confirm", code=last_code(ALICE), password=PASSWORD)
    visitor.follow(page)
    bodies += [visitor.get(p) for p in SIGNED_IN_PAGES]
    pass_interval()
    bodies.append(visitor.submit(visitor.get("/account/number"), "/account/number", phone=BOB))
    forms = [f for page in bodies for f in page.doc.forms]
    assert len(forms) > 12
    for form in forms:
        assert form.get("method") == "post", form.get("action")
        assert form.xpath(".//input[@name='csrf' and @type='hidden']"), form.get("action")


# --- Sessions ----------------------------------------------------------------------------------


def _session_items() -> list[dict]:
    return client("dynamodb").scan(TableName=tables.WEB_SESSIONS.name())["Items"]


def test_the_table_holds_a_hash_of_the_token_with_an_expiry_never_the_token(visitor):
    sign_up(visitor, username="alice")
    token = visitor.cookies["session"]
    (item,) = _session_items()
    assert token not in json.dumps(item)
    assert item["session_hash"]["S"] == sessions.key_of(token)
    assert int(item["expires_at"]["N"]) > 0
    assert tables.WEB_SESSIONS.ttl_attribute == "expires_at"


def test_an_idle_session_expires(visitor):
    sign_up(visitor, username="alice")
    advance_clock(settings.get().web_session_idle - 60)
    assert visitor.get("/account").status == 200  # activity moves the expiry forward
    advance_clock(settings.get().web_session_idle - 60)
    assert visitor.get("/account").status == 200
    advance_clock(settings.get().web_session_idle + 1)
    page = visitor.get("/account")
    assert page.status == 303 and "/signin" in page.location
    assert "session" not in visitor.cookies  # the stale cookie is cleared
    assert not _session_items()


def test_a_session_ends_at_its_maximum_age_however_active(visitor):
    sign_up(visitor, username="alice")
    step = settings.get().web_session_idle // 2
    for _ in range(settings.get().web_session_max_age // step - 1):
        advance_clock(step)
        assert visitor.get("/account").status == 200
    advance_clock(step + 1)
    assert visitor.get("/account").status == 303


def test_an_expired_session_post_asks_to_sign_in_again_and_does_nothing(visitor):
    sign_up(visitor, username="alice")
    page = visitor.get("/account")
    advance_clock(settings.get().web_session_idle + 1)
    page = visitor.submit(page, "/account/discoverable", discoverable="no")
    assert page.location == "/signin?done=session_ended"
    assert "Your session ended" in visitor.follow(page).text()
    assert accounts.get_by_username("alice").discoverable is True


@pytest.mark.parametrize(
    "end",
    [
        lambda: accounts.update(
            accounts.aor_for("alice"),
            credentials=accounts.credentials_from_password("alice", "another one"),
            revoke=True,
        ),
        lambda: accounts.set_disabled(accounts.aor_for("alice"), True),
        lambda: accounts.delete(accounts.aor_for("alice")),
    ],
    ids=["new-password", "disabled", "deleted"],
)
def test_sessions_end_with_the_accounts_credentials_whatever_changed_them(visitor, end):
    sign_up(visitor, username="alice")
    end()
    assert visitor.get("/account").status == 303


def test_the_revocation_stream_deletes_the_sessions(visitor, api):
    from chalicelib.live import updates

    sign_up(visitor, username="alice")
    sign_in(Visitor(api), "alice")
    assert len(_session_items()) == 2
    updates.revoke(accounts.aor_for("alice"), "rejected")
    assert not _session_items()


def test_a_deleted_and_recreated_account_does_not_inherit_sessions(visitor, api):
    sign_up(visitor, username="alice")
    token = visitor.cookies["session"]
    accounts.delete(accounts.aor_for("alice"))
    advance_clock(1)  # accounts are dated to the second (and the delete's stream ends them too)
    accounts.create("alice", accounts.credentials_from_password("alice", PASSWORD))
    assert sessions.resume(token) is None


def test_sessions_per_account_are_capped_oldest_ending_first(api, monkeypatch):
    monkeypatch.setenv("WEB_SESSIONS_PER_ACCOUNT", "3")
    reset_caches()
    browsers = [Visitor(api) for _ in range(4)]
    sign_up(browsers[0], username="alice")
    for browser in browsers[1:]:
        advance_clock(1)
        assert sign_in(browser, "alice").status == 303
    assert [b.get("/account").status for b in browsers] == [303, 200, 200, 200]
    assert len(_session_items()) == 3


def test_signing_out_deletes_the_session(visitor):
    sign_up(visitor, username="alice")
    token = visitor.cookies["session"]
    visitor.submit(visitor.get("/account"), "/signout")
    assert not _session_items() and sessions.resume(token) is None
    assert any(c.startswith("session=;") and "Max-Age=0" in c for c in visitor.set_cookies)


def test_nothing_of_a_session_or_a_number_reaches_the_logs(visitor, log_records):
    sign_up(visitor, username="alice")
    visitor.get("/account")
    visitor.submit(visitor.get("/account"), "/signout")
    sign_in(visitor, "alice")
    secrets = {v for k, v in visitor.cookies.items()}
    secrets |= {c.split("=", 1)[1].split(";")[0] for c in visitor.set_cookies}
    secrets |= set(re.findall(r'name="csrf" value="([^"]+)"', visitor.get("/account").body))
    secrets = {s for s in secrets if s}
    logs = "\n".join(log_records)
    assert "web sign-in" in logs
    for secret in secrets | {ALICE, PASSWORD, "alice@example.org"}:
        assert secret not in logs, secret


# --- The REST API's limits ----------------------------------------------------------------------


def test_password_guessing_is_blocked_like_rest_and_sip(visitor, api):
    sign_up(Visitor(api), username="alice")
    for _ in range(settings.get().auth_pair_failures):
        assert sign_in(visitor, "alice", "wrong guess").status == 401
    page = sign_in(visitor, "alice")  # the right one, refused unchecked now
    assert page.status == 429 and int(page.headers["Retry-After"]) > 0
    assert "Too many failed attempts" in " ".join(page.summary())
    r = api.http.get(
        "/v1/accounts/me", headers={"Authorization": "Basic YWxpY2U6Y29ycmVjdCBob3JzZQ=="}
    )
    assert r.status_code == 429  # one budget for the web, REST and SIP


def test_the_sms_limits_of_the_api_hold_on_the_pages(visitor):
    page = visitor.submit(visitor.get("/signup"), "/signup", phone=ALICE)
    for _ in range(settings.get().sms_per_number_daily - 1):
        pass_interval()
        page = visitor.submit(page, "/signup", again="1")
        assert page.status == 200
    pass_interval()
    page = visitor.submit(page, "/signup", again="1")
    assert page.status == 429
    assert len(sent_sms()) == settings.get().sms_per_number_daily


def test_a_code_pending_for_another_browser_is_not_replaced(api):
    first, second = Visitor(api), Visitor(api)
    first.submit(first.get("/signup"), "/signup", phone=ALICE)
    pass_interval()
    page = second.submit(second.get("/signup"), "/signup", phone=ALICE)
    assert page.status == 429 and len(sent_sms()) == 1


def test_aws_unavailable_is_an_honest_503_page(visitor):
    from tests.faults.botofaults import Faults

    visitor.get("/signup")
    faults = Faults()
    faults.set("dynamodb", "throttle")
    try:
        page = visitor.submit(visitor.get("/signup"), "/signup", phone=ALICE)
    finally:
        faults.clear()
    assert page.status == 503 and int(page.headers["Retry-After"]) >= 1
    assert "busy" in page.text() and not sent_sms()
    _assert_safe_headers(page)


def test_bodies_that_are_no_form_of_ours(visitor, api):
    token = visitor.get("/signin").form("/signin").xpath(".//input[@name='csrf']")[0].get("value")
    big = urlencode({"csrf": token, "identifier": "x" * settings.get().web_max_form_bytes})
    headers = {**visitor._headers(FORM)}
    assert api.http.post("/signin", headers=headers, body=big).status_code == 413
    headers["Content-Type"] = "application/json"
    assert api.http.post("/signin", headers=headers, body="{}").status_code == 415
    assert (
        api.http.post("/signup", headers=visitor._headers(FORM), body=b"\xff\xfe").status_code
        == 400
    )
    assert visitor.post("/", {"csrf": token}).status == 405


# --- A stranger learns nothing -------------------------------------------------------------------


def _shown(e164: str) -> str:
    return pages._shown(e164)


def _same(a: Page, b: Page) -> None:
    """The same answer but for the per-browser tokens."""

    def strip(page: Page) -> str:
        body = re.sub(r'name="(csrf|identifier)"( type="[a-z]+")? value="[^"]+"', "", page.body)
        for number in (ALICE, BOB):  # the number the visitor typed is shown back to them
            body = body.replace(number, "N").replace(_shown(number), "N")
        return body

    assert (a.status, strip(a)) == (b.status, strip(b))
    assert {k: v for k, v in a.headers.items() if k != "Set-Cookie"} == {
        k: v for k, v in b.headers.items() if k != "Set-Cookie"
    }


def test_a_stranger_cannot_tell_who_has_an_account(api):
    sign_up(Visitor(api), ALICE, username="alice")
    pass_interval()
    stranger = Visitor(api)
    # Sign-up and recovery answer the same for a number with an account and one without.
    for path in ("/signup", "/recover"):
        known = stranger.submit(stranger.get(path), path, phone=ALICE)
        unknown = stranger.submit(stranger.get(path), path, phone=BOB)
        _same(known, unknown)
        pass_interval()
    # Sign-in answers the same for a wrong password, an unknown name and an unknown number.
    known = sign_in(stranger, "alice", "wrong guess")
    for identifier in ("nobody", "+33 6 11 11 11 11", ALICE):
        _same(known, sign_in(stranger, identifier, "wrong guess"))
    # A username's being taken is told only to whoever proved a number.
    page = stranger.submit(
        stranger.get("/signup"), "/signup", phone="+33611223344", username="alice"
    )
    assert "We sent a code" in page.text()


def _dynamodb_calls(work) -> list[str]:
    seen: list[str] = []

    def count(model, **_) -> None:
        seen.append(model.name)

    events = client("dynamodb").meta.events
    events.register_first("before-call.dynamodb", count)  # ahead of the local stack's direct route
    try:
        work()
    finally:
        events.unregister("before-call.dynamodb", count)
    return seen


def test_signing_in_by_number_makes_the_same_calls_whether_or_not_it_is_linked(api):
    sign_up(Visitor(api), ALICE, username="alice")
    stranger = Visitor(api)
    sign_in(stranger, "nobody", "wrong guess")  # this address's failure count exists for both
    linked = _dynamodb_calls(lambda: sign_in(stranger, ALICE, "wrong guess"))
    free = _dynamodb_calls(lambda: sign_in(stranger, BOB, "wrong guess"))
    assert linked == free and "GetItem" in linked


# --- The catalogue ---------------------------------------------------------------------------


def test_every_key_of_the_catalogue_is_used_and_every_used_key_exists():
    used: set[str] = set()
    sources = [
        *(ROOT / "chalicelib" / "web").rglob("*.py"),
        *(ROOT / "chalicelib/web/templates").glob("*.html"),
    ]
    for path in sources:
        text = path.read_text()
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_]+\.[a-z_0-9]+)["']""", text))
        used |= set(
            re.findall(
                r"""["']((?:done|error|wait|signup|recover|number|code|[a-z]+)\.[a-z_0-9]+)["']""",
                text,
            )
        ) & set(catalogue.EN)
    done = {k for k in catalogue.EN if k.startswith("done.")}  # named by ?done=...
    assert used - set(catalogue.EN) == set()
    assert set(catalogue.EN) - used - done == set()
    for lang, words in catalogue.CATALOGUES.items():
        assert set(words) == set(catalogue.EN), lang


def test_the_language_follows_the_browser_and_falls_back_to_english():
    assert catalogue.language("fr-CH, fr;q=0.9, en;q=0.8") == "en"
    assert catalogue.language(None) == "en"
    assert catalogue.language("x;q=bad, en") == "en"


def test_routes_of_app_and_pages_agree():
    import app

    # The one page with a part of its path of its own has a route of its own.
    assert set(app.WEB_PAGES) | {"/creation_token/check"} == set(pages.ROUTES)
