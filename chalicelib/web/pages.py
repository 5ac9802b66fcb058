"""The web pages: each a GET that shows it and/or a POST that acts, over the same domain
functions as the REST API (sign-up, recovery and linking by SMS code, the password-guessing
limits, the account store), answered as server-rendered HTML.

`serve` is the one entry point (app.py's web routes call it): it finds the browser's session,
checks the CSRF token of every POST, runs the page under the REST deadline and turns what
escapes it into an honest page (503 with Retry-After when AWS is unavailable, never a stack
trace). Pages never tell a signed-out visitor whether a number or a username has an account:
they answer the same as the REST API does, from the same functions.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chalice import Response
from chalice.app import Request

from chalicelib import accounts, settings
from chalicelib.accounts import auth_guard, linking, phone, signup
from chalicelib.errors import DomainError
from chalicelib.observability import flush_metrics, logger, pseudonym
from chalicelib.resilience import deadline, is_unavailable, retry_after
from chalicelib.web import forms, render
from chalicelib.web.site import Values, Web

Page = Callable[[Web], Response]


@dataclass(frozen=True)
class Route:
    get: Page | None = None
    post: Page | None = None
    signed_in: bool = False  # signed-out browsers are sent to sign in first
    signed_out: bool = False  # signed-in browsers are sent to their account instead


# --- Shared parts ---------------------------------------------------------------------------


def _regions(web: Web) -> list[tuple[str, str]]:
    from chalicelib.web import catalogue

    allowed = settings.get().sms_allowed_regions
    return sorted(((r, catalogue.country(r, web.lang)) for r in allowed), key=lambda p: p[1])


def _default_region(account: accounts.Account | None = None) -> str:
    s = settings.get()
    own = phone.region_of(account.phone) if account and account.phone else None
    for region in (own, s.default_region):
        if region and region in s.sms_allowed_regions:
            return region
    return s.sms_allowed_regions[0] if s.sms_allowed_regions else s.default_region


def _phone_hint(web: Web, region: str) -> str:
    """An example mobile number of `region`, as people write it at home and abroad."""
    import phonenumbers

    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    if example is None:
        return web.t("form.phone_hint_any")
    return web.t(
        "form.phone_hint",
        national=phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL),
        international=phonenumbers.format_number(
            example, phonenumbers.PhoneNumberFormat.INTERNATIONAL
        ),
    )


def _chosen_region(values: Values) -> str | None:
    region = values["region"].strip().upper()
    return region if region in settings.get().sms_allowed_regions else None


def _shown(e164: str | None) -> str:
    """A number as people write it: +33 6 12 34 56 78."""
    if not e164:
        return ""
    import phonenumbers

    number = phonenumbers.parse(e164, None)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def _owner(web: Web) -> str:
    """Who asks for a code on a signed-out page: this browser (its forms cookie), so another
    browser can neither replace its pending code nor take its place."""
    return f"web|{web.anonymous or ''}"


def _check_password(account_name: str, password: str, source: str) -> accounts.Account:
    """The account `account_name` names, proven by `password` behind the password-guessing
    limits REST and SIP share (429 `auth_blocked` past them, unchecked), else `unauthorized`."""
    attempt = auth_guard.Attempt(accounts.aor_for(account_name), source)
    proven = auth_guard.guarded(
        attempt, lambda: accounts.authenticate_password(account_name, password)
    )
    if proven is None:
        raise DomainError("unauthorized", "wrong username or password")
    return proven


def _sign_in_name(identifier: str) -> str:
    """The username a sign-in identifier names: a phone number is its account's (whatever it
    is called), else the number itself (accounts made without a username are named by it).
    The same reads are made whether or not the number belongs to someone."""
    e164 = phone.try_parse(identifier, None) if _looks_like_number(identifier) else None
    if e164 is None:
        return identifier
    owner = accounts.find_by_phone(e164)
    if owner is None:
        accounts.get_by_username(e164)  # the read an owner costs: no timing difference
        return e164
    return owner.username


def _looks_like_number(identifier: str) -> bool:
    digits = sum(c.isdigit() for c in identifier)
    return digits >= 6 and all(c.isdigit() or c in "+ ()-." for c in identifier)


def _safe_next(path: str) -> str | None:
    """Where to go after signing in: only a page of ours that needs it."""
    route = ROUTES.get(path)
    return path if route is not None and route.signed_in and route.get is not None else None


# --- Flows proven by an SMS code ---------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    heading: str
    confirm: str
    resend: str
    back: str
    submit: str
    password: str | None = None  # the label of the password chosen with the code, if any
    username: str = ""
    hidden: dict[str, str] = field(default_factory=dict)

    @property
    def resend_fields(self) -> dict[str, str]:
        return {**self.hidden, "again": "1"}


def _code_page(
    web: Web,
    flow: Flow,
    e164: str,
    *,
    problems: forms.Problems | None = None,
    values: Values | None = None,
    resent: bool = False,
) -> Response:
    s = settings.get()
    return web.render(
        "code.html",
        problems=problems,
        notice=web.t("code.resent") if resent else None,
        flow=flow,
        shown_phone=_shown(e164),
        minutes=s.code_ttl_seconds // 60,
        code_length=s.code_length,
        password_min=s.password_min_length,
        values=values or Values(),
    )


def _signup_flow(e164: str, region: str, username: str) -> Flow:
    return Flow(
        heading="signup.code_title",
        confirm="/signup/confirm",
        resend="/signup",
        back="/signup",
        submit="signup.submit",
        password="signup.password",
        username=username,
        hidden={"phone": e164, "region": region, "username": username},
    )


def _recover_flow(e164: str, region: str) -> Flow:
    return Flow(
        heading="recover.code_title",
        confirm="/recover/confirm",
        resend="/recover",
        back="/recover",
        submit="recover.submit",
        password="recover.password",
        hidden={"phone": e164, "region": region},
    )


def _number_flow(e164: str, region: str) -> Flow:
    return Flow(
        heading="number.code_title",
        confirm="/account/number/confirm",
        resend="/account/number",
        back="/account/number",
        submit="number.submit",
        hidden={"phone": e164, "region": region},
    )


# --- Signed out: home, sign-up, sign-in, recovery ---------------------------------------------


def home(web: Web) -> Response:
    return web.render("home.html", notice=web.notice())


def _number_page(
    web: Web,
    template: str,
    problems: forms.Problems | None,
    values: Values | None,
    **context: Any,
) -> Response:
    """A page whose form asks for a number: its country list and an example number of the
    country chosen (else the account's, else DEFAULT_REGION)."""
    fallback = _default_region(web.account)
    values = values or Values(region=fallback)
    return web.render(
        template,
        problems=problems,
        values=values,
        regions=_regions(web),
        phone_hint=_phone_hint(web, _chosen_region(values) or fallback),
        **context,
    )


def _number_posted(web: Web, *more: str) -> tuple[Values, str | None, forms.Problems]:
    """A posted number, its country, and what is missing or wrong in them."""
    values = web.fields("region", "phone", *more)
    problems = web.missing(values, "phone")
    region = _chosen_region(values)
    if region is None:
        problems.add("region", web.t("error.region"))
    return values, region, problems


def signup_form(
    web: Web, *, problems: forms.Problems | None = None, values: Values | None = None
) -> Response:
    return _number_page(web, "signup.html", problems, values)


def signup_request(web: Web) -> Response:
    values, region, problems = _number_posted(web, "username")
    if problems:
        return signup_form(web, problems=problems, values=values)
    username = values["username"].strip()
    try:
        signup.request_code(
            values["phone"],
            username=username or None,
            default_region=region,
            source_ip=web.client_ip,
            owner=_owner(web),
        )
    except DomainError as exc:
        problems = web.problems(exc, ("phone", "username"))
        return signup_form(web, problems=problems, values=values)
    e164 = phone.parse(values["phone"], region)
    return _code_page(
        web, _signup_flow(e164, region or "", username), e164, resent=bool(web.form.get("again"))
    )


def signup_confirm(web: Web) -> Response:
    values = web.fields("phone", "region", "username", "code", "password")
    flow = _signup_flow(values["phone"], values["region"], values["username"])
    problems = web.missing(values, "code", "password")
    if problems:
        return _code_page(web, flow, values["phone"], problems=problems, values=values)
    try:
        result = signup.confirm(
            values["phone"],
            values["code"].strip(),
            password=values["password"],
            default_region=_chosen_region(values),
        )
    except DomainError as exc:
        if exc.code == "username_taken":
            # Told only now that the number is proven; the code was for that name.
            again = Values(
                region=values["region"], phone=_shown(values["phone"]), username=values["username"]
            )
            return signup_form(web, problems=web.problems(exc, ("username",)), values=again)
        problems = web.problems(exc, ("code", "password"))
        return _code_page(web, flow, values["phone"], problems=problems, values=values)
    web.sign_in(accounts.require(accounts.aor_for(result.username)))
    return web.redirect("/account", done="recovered_signup" if result.recovered else "created")


def signin_form(
    web: Web, *, problems: forms.Problems | None = None, values: Values | None = None
) -> Response:
    values = values or Values()
    return web.render(
        "signin.html",
        problems=problems,
        notice=web.notice(),
        values=values,
        next=_safe_next(values["next"] or web.query.get("next", "")) or "",
    )


def signin(web: Web) -> Response:
    values = web.fields("identifier", "password", "next")
    problems = web.missing(values, "identifier", "password")
    if problems:
        return signin_form(web, problems=problems, values=values)
    try:
        account = _check_password(
            _sign_in_name(values["identifier"].strip()), values["password"], web.client_ip
        )
        if account.disabled:
            raise DomainError("account_disabled", "this account is disabled")
    except DomainError as exc:
        return signin_form(web, problems=web.problems(exc, ("password",)), values=values)
    web.sign_in(account)
    return web.redirect(_safe_next(values["next"]) or "/account")


def signout(web: Web) -> Response:
    if web.account is not None:
        logger.info("web sign-out", extra={"aor": pseudonym(web.account.aor)})
    web.sign_out()
    return web.redirect("/signin", done="signed_out")


def recover_form(
    web: Web, *, problems: forms.Problems | None = None, values: Values | None = None
) -> Response:
    return _number_page(web, "recover.html", problems, values)


def recover_request(web: Web) -> Response:
    values, region, problems = _number_posted(web)
    if problems:
        return recover_form(web, problems=problems, values=values)
    try:
        signup.request_code(
            values["phone"],
            default_region=region,
            source_ip=web.client_ip,
            owner=_owner(web),
            binding=signup.RECOVER,
        )
    except DomainError as exc:
        return recover_form(web, problems=web.problems(exc, ("phone",)), values=values)
    e164 = phone.parse(values["phone"], region)
    return _code_page(
        web, _recover_flow(e164, region or ""), e164, resent=bool(web.form.get("again"))
    )


def recover_confirm(web: Web) -> Response:
    values = web.fields("phone", "region", "code", "password")
    flow = _recover_flow(values["phone"], values["region"])
    problems = web.missing(values, "code", "password")
    if problems:
        return _code_page(web, flow, values["phone"], problems=problems, values=values)
    try:
        result = signup.recover(
            values["phone"],
            values["code"].strip(),
            password=values["password"],
            default_region=_chosen_region(values),
        )
    except DomainError as exc:
        problems = web.problems(exc, ("code", "password"))
        return _code_page(web, flow, values["phone"], problems=problems, values=values)
    web.sign_in(accounts.require(accounts.aor_for(result.username)))
    return web.redirect("/account", done="recovered")


# --- Signed in: the account ----------------------------------------------------------------------


def _me(web: Web) -> accounts.Account:
    assert web.account is not None, "a signed_in route"
    return web.account


def account_page(web: Web) -> Response:
    me = _me(web)
    return web.render(
        "account.html",
        notice=web.notice(),
        shown_phone=_shown(me.phone),
        export_available=False,
    )


def discoverable(web: Web) -> Response:
    me = _me(web)
    choice = web.form.get("discoverable")
    if choice not in ("yes", "no"):
        return web.message("badform.title", "badform.body", 400, link="/account")
    accounts.update(me.aor, discoverable=choice == "yes")
    logger.info("account updated", extra={"aor": pseudonym(me.aor), "fields": ["discoverable"]})
    return web.redirect("/account", done="discoverable")


def password_form(web: Web, *, problems: forms.Problems | None = None) -> Response:
    return web.render(
        "password.html", problems=problems, password_min=settings.get().password_min_length
    )


def password_change(web: Web) -> Response:
    me = _me(web)
    values = web.fields("current", "password")
    problems = web.missing(values, "current", "password")
    if problems:
        return password_form(web, problems=problems)
    wrong = {"unauthorized": ("current", "error.password_wrong")}
    try:
        accounts.validate_password(values["password"])  # before the current one is checked
        _check_password(me.username, values["current"], web.client_ip)
        credentials = accounts.credentials_from_password(me.username, values["password"])
        # The sessions made with the old password end (SIP and web); this browser gets a new one.
        updated = accounts.update(me.aor, credentials=credentials, revoke=True)
    except DomainError as exc:
        return password_form(web, problems=web.problems(exc, ("current", "password"), at=wrong))
    logger.info("account updated", extra={"aor": pseudonym(me.aor), "fields": ["password"]})
    web.sign_in(updated)
    return web.redirect("/account", done="password")


def number_form(
    web: Web, *, problems: forms.Problems | None = None, values: Values | None = None
) -> Response:
    return _number_page(web, "number.html", problems, values, shown_phone=_shown(_me(web).phone))


def number_request(web: Web) -> Response:
    me = _me(web)
    values, region, problems = _number_posted(web)
    if problems:
        return number_form(web, problems=problems, values=values)
    try:
        linking.request(me, values["phone"], default_region=region, source_ip=web.client_ip)
    except DomainError as exc:
        return number_form(web, problems=web.problems(exc, ("phone",)), values=values)
    e164 = phone.parse(values["phone"], region)
    return _code_page(
        web, _number_flow(e164, region or ""), e164, resent=bool(web.form.get("again"))
    )


def number_confirm(web: Web) -> Response:
    me = _me(web)
    values = web.fields("phone", "region", "code")
    flow = _number_flow(values["phone"], values["region"])
    problems = web.missing(values, "code")
    if problems:
        return _code_page(web, flow, values["phone"], problems=problems, values=values)
    try:
        e164 = phone.parse(values["phone"])
        linking.confirm(me, values["code"].strip(), phone_e164=e164)
    except DomainError as exc:
        problems = web.problems(exc, ("code",))
        return _code_page(web, flow, values["phone"], problems=problems, values=values)
    return web.redirect("/account", done="number")


def number_remove(web: Web) -> Response:
    me = _me(web)
    try:
        linking.unlink(me)
    except DomainError as exc:
        if exc.code != "no_phone":
            raise
    return web.redirect("/account", done="number_removed")


@dataclass(frozen=True)
class _Shown:
    """A device as its page shows it."""

    uuid: str
    name: str
    user_agent: str
    seen: str
    seen_iso: str
    registered: bool
    subscriptions: int


def devices_page(web: Web) -> Response:
    from datetime import UTC, datetime

    from chalicelib.live import devices

    shown = []
    for device in devices.of_account(_me(web).aor):
        when = datetime.fromtimestamp(device.update_time, UTC)
        shown.append(
            _Shown(
                uuid=device.uuid,
                name=device.name,
                user_agent=device.user_agent,
                seen=web.t(
                    "devices.time", date=when.strftime("%Y-%m-%d"), time=when.strftime("%H:%M")
                ),
                seen_iso=when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                registered=device.registered,
                subscriptions=device.subscriptions,
            )
        )
    return web.render("devices.html", notice=web.notice(), devices=shown)


def device_sign_out(web: Web) -> Response:
    from chalicelib.live import devices

    found = devices.sign_out(_me(web).aor, web.form.get("device", "")[:300])
    return web.redirect("/account/devices", done="device_signed_out" if found else "device_gone")


def delete_form(web: Web, *, problems: forms.Problems | None = None) -> Response:
    return web.render("delete.html", problems=problems)


def delete(web: Web) -> Response:
    me = _me(web)
    values = web.fields("password")
    problems = web.missing(values, "password")
    if problems:
        return delete_form(web, problems=problems)
    wrong = {"unauthorized": ("password", "error.password_wrong")}
    try:
        _check_password(me.username, values["password"], web.client_ip)
    except DomainError as exc:
        return delete_form(web, problems=web.problems(exc, ("password",), at=wrong))
    # What the REST API's DELETE does: the stream of this delete then ends the account's SIP
    # registrations and dialogs, and its web sessions (this one is ended here).
    accounts.delete(me.aor)
    logger.info("account deleted", extra={"aor": pseudonym(me.aor)})
    web.sign_out()
    return web.redirect("/", done="deleted")


# --- Setting up an app ------------------------------------------------------------------------


def setup_page(web: Web, *, problems: forms.Problems | None = None, **link: Any) -> Response:
    s = settings.get()
    return web.render(
        "setup.html",
        problems=problems,
        link=link.get("url"),
        qr=link.get("qr"),
        link_minutes=s.provisioning_ttl // 60,
        proxy=s.provisioned_proxy,
        rls_uri=s.provisioned_rls_uri,
    )


def setup_link(web: Web) -> Response:
    """A new single-use provisioning link for a phone, shown once (never on a GET: a reload
    or a link followed spends nothing), as a QR code and as text."""
    import base64

    from chalicelib.accounts import provisioning
    from chalicelib.api import http_api

    try:
        link = provisioning.issue_link(_me(web), http_api.public_base_url(web.request))
    except DomainError as exc:
        return setup_page(web, problems=web.problems(exc, ()))
    svg = provisioning.qr_svg(link.url)
    qr = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
    return setup_page(web, url=link.url, qr=qr)


# --- An app's account-creation request ---------------------------------------------------------


def creation_request(web: Web, *, problems: forms.Problems | None = None) -> Response:
    """The page an app without push support sends its person to: they prove they are there,
    and the app may then create an account (`accounts.app_signup`)."""
    import json

    from chalicelib.accounts import app_signup
    from chalicelib.web import human

    token = web.params["token"]
    state = app_signup.request_token_state(token)
    if state == "invalid":
        return web.message(
            "request.invalid_title",
            "request.invalid_body",
            404,
            link="/signup",
            link_text="request.signup",
        )
    return web.render(
        "request.html",
        problems=problems,
        done=state == "validated",
        action=f"/creation_token/check/{token}",
        challenge=json.dumps(human.challenge(token)) if state == "pending" else "",
    )


def creation_request_confirm(web: Web) -> Response:
    from chalicelib.accounts import app_signup
    from chalicelib.web import human

    token = web.params["token"]
    if not human.proven(web.form.get("altcha"), token):
        problems = forms.Problems()
        problems.add(None, web.t("error.human"))
        return creation_request(web, problems=problems)
    app_signup.validate_request_token(token)  # an expired one: the page says so below
    return web.redirect(f"/creation_token/check/{token}")


ROUTES: dict[str, Route] = {
    "/": Route(get=home, signed_out=True),
    "/signup": Route(get=signup_form, post=signup_request, signed_out=True),
    "/signup/confirm": Route(post=signup_confirm),
    "/signin": Route(get=signin_form, post=signin, signed_out=True),
    "/signout": Route(post=signout),
    "/recover": Route(get=recover_form, post=recover_request, signed_out=True),
    "/recover/confirm": Route(post=recover_confirm),
    "/account": Route(get=account_page, signed_in=True),
    "/account/discoverable": Route(post=discoverable, signed_in=True),
    "/account/password": Route(get=password_form, post=password_change, signed_in=True),
    "/account/number": Route(get=number_form, post=number_request, signed_in=True),
    "/account/number/confirm": Route(post=number_confirm, signed_in=True),
    "/account/number/remove": Route(post=number_remove, signed_in=True),
    "/account/devices": Route(get=devices_page, post=device_sign_out, signed_in=True),
    "/account/delete": Route(get=delete_form, post=delete, signed_in=True),
    "/setup": Route(get=setup_page, post=setup_link, signed_in=True),
    "/creation_token/check": Route(get=creation_request, post=creation_request_confirm),
}


# --- The entry point -------------------------------------------------------------------------


def serve(page: str, request: Request, **params: str) -> Response:
    """Answer a request for one of ROUTES's pages (`params`: the parts of its path)."""
    web = Web(request, page, params)
    context = request.context or {}
    logger.set_correlation_id(context.get("requestId") or str(uuid.uuid4()))
    try:
        with deadline(settings.get().rest_deadline):
            return _serve(web, ROUTES[page])
    except forms.BadForm as exc:
        return web.message("badform.title", "badform.body", exc.status)
    except Exception as exc:
        if is_unavailable(exc) or (isinstance(exc, DomainError) and exc.code == "unavailable"):
            logger.warning("AWS unavailable in web page %s: %s", page, type(exc).__name__)
            return web.message(
                "busy.title", "busy.body", 503, headers={"Retry-After": retry_after()}
            )
        logger.exception("unhandled error in web page %s", page)
        return web.message("internal.title", "internal.body", 500)
    finally:
        flush_metrics()
        logger.set_correlation_id(None)


def _serve(web: Web, route: Route) -> Response:
    web.resume()
    handler = route.get if web.method == "GET" else route.post
    if handler is None:
        if web.method == "GET":  # a reload or a bookmark of a page that only acts
            return web.redirect(web.page.rsplit("/", 1)[0] or "/")
        return web.message("notfound.title", "notfound.body", 405)
    if route.signed_out and web.account is not None:
        return web.redirect("/account")
    if route.signed_in and web.account is None:
        if web.method == "GET":
            return web.redirect("/signin", next=web.page)
        return web.redirect("/signin", done="session_ended")
    if web.method == "POST" and not web.read_form():
        return web.message(
            "forbidden.title", "forbidden.body", 403, link=web.page if route.get else "/"
        )
    return handler(web)


def static(name: str, request: Request) -> Response:
    """The stylesheet and the script (anything else: 404)."""
    web = Web(request, f"/static/{name}")
    found = render.static_file(name)
    if found is None:
        return web.message("notfound.title", "notfound.body", 404)
    versioned = request.query_params and request.query_params.get("v") == found.version
    cache = "public, max-age=31536000, immutable" if versioned else "no-cache"
    return web.respond(
        found.body, 200, {"Content-Type": found.content_type, "Cache-Control": cache}
    )
