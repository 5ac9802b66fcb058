"""One web request as the pages see it (`Web`): its form, its browser's session and cookies,
its language, the links back to us; and the HTML response with the headers every page gets.

Behind API Gateway the pages live under the stage's path (`/api/...`); every link and
redirect is built from the path the browser used, so the same pages work there, behind a
custom domain and on `make run`'s loopback port.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from chalice import Response
from chalice.app import Request
from markupsafe import Markup

from chalicelib import accounts, settings
from chalicelib.accounts import sessions
from chalicelib.api import http_api
from chalicelib.errors import DomainError
from chalicelib.observability import logger, pseudonym
from chalicelib.web import catalogue, forms, render, security

_SAFE_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)*")


class Values(dict[str, str]):
    """Posted fields as templates read them: a field not posted is empty."""

    def __missing__(self, key: str) -> str:
        return ""


def base_path(request: Request, page: str) -> str:
    """What precedes our own paths in the browser's URL: the stage's path behind API Gateway
    (`/api`), nothing on `make run`."""
    context = request.context or {}
    seen = str(context.get("path") or page).rstrip("/")
    own = page.rstrip("/")
    if not seen.endswith(own):
        return ""
    prefix = seen[: len(seen) - len(own)]
    return prefix if _SAFE_PREFIX.fullmatch(prefix) else ""


class Web:
    """The request of one page, and what its response will carry."""

    def __init__(self, request: Request, page: str, params: dict[str, str] | None = None) -> None:
        headers = request.headers
        self.request = request
        self.page = page
        #: The path's own parts (`{token}` of /creation_token/check/{token}).
        self.params = params or {}
        self.method = request.method.upper()
        self.secure = security.is_secure(headers)
        self.lang = catalogue.language(headers.get("accept-language"))
        self.base = base_path(request, "/".join([page, *self.params.values()]))
        self.query: dict[str, str] = dict(request.query_params or {})
        self.client_ip = http_api.client_ip(request)
        self.form = Values()
        self.session: sessions.Session | None = None
        self.account: accounts.Account | None = None
        self._cookies = security.read_cookies(headers)
        self._session_cookie = security.cookie_name(security.SESSION, self.secure)
        self._anonymous_cookie = security.cookie_name(security.ANONYMOUS, self.secure)
        self.anonymous: str | None = self._cookies.get(self._anonymous_cookie) or None
        self._set_cookies: list[str] = []

    # --- The browser's session ------------------------------------------------------------

    def resume(self) -> None:
        """Find who the browser is signed in as (a session cookie that is no longer good is
        cleared)."""
        token = self._cookies.get(self._session_cookie)
        if not token:
            return
        found = sessions.resume(token)
        if found is None:
            self._set_cookies.append(
                security.clear_cookie(self._session_cookie, secure=self.secure)
            )
            return
        self.session, self.account = found

    def sign_in(self, account: accounts.Account) -> None:
        """A new session for `account` (proven just now); the browser's previous one ends."""
        self.sign_out()
        token, self.session = sessions.start(account)
        self.account = account
        self._set_cookies = [c for c in self._set_cookies if not c.startswith(self._session_cookie)]
        self._set_cookies.append(
            security.set_cookie(self._session_cookie, token, secure=self.secure)
        )
        logger.info("web sign-in", extra={"aor": pseudonym(account.aor)})

    def sign_out(self) -> None:
        token = self._cookies.get(self._session_cookie)
        if token:
            sessions.end(token)
            self._set_cookies.append(
                security.clear_cookie(self._session_cookie, secure=self.secure)
            )
        self.session = None
        self.account = None

    # --- Forms ----------------------------------------------------------------------------

    def bindings(self) -> list[str]:
        """What this browser's forms may be bound to (its session, its anonymous cookie)."""
        out = []
        if self.session is not None:
            out.append(self.session.binding())
        if self.anonymous:
            out.append(security.anonymous_binding(self.anonymous))
        return out

    def csrf(self) -> str:
        """The token this browser's forms carry; a signed-out visitor's first form gets its
        anonymous cookie here."""
        if self.session is not None:
            return security.csrf_token(self.session.binding())
        if not self.anonymous:
            self.anonymous = security.new_anonymous_value()
            self._set_cookies.append(
                security.set_cookie(self._anonymous_cookie, self.anonymous, secure=self.secure)
            )
        return security.csrf_token(security.anonymous_binding(self.anonymous))

    def read_form(self) -> bool:
        """Parse the posted form; whether its CSRF token is this browser's."""
        self.form = Values(
            forms.parse(
                http_api.media_type(self.request),
                http_api.body_bytes(self.request),
                max_bytes=settings.get().web_max_form_bytes,
            )
        )
        return security.csrf_ok(self.form.get("csrf"), self.bindings())

    def fields(self, *names: str) -> Values:
        return Values({name: self.form.get(name, "") for name in names})

    def missing(self, values: Values, *names: str) -> forms.Problems:
        problems = forms.Problems()
        for name in names:
            if not values[name].strip():
                problems.add(name, self.t("error.required"))
        return problems

    def problems(
        self,
        exc: DomainError,
        shown: Iterable[str],
        *,
        at: dict[str, tuple[str, str]] | None = None,
    ) -> forms.Problems:
        """A domain error as the form shows it; `at` moves a code to another field and words
        ({code: (field, catalogue key)})."""
        if at and exc.code in at:
            name, key = at[exc.code]
            problems = forms.Problems(status=exc.http_status)
            problems.add(name, self.t(key))
            return problems
        return forms.Problems.of(exc, self.lang, fields_shown=frozenset(shown))

    # --- Responses ------------------------------------------------------------------------

    def t(self, key: str, **fields: object) -> str:
        return catalogue.text(key, self.lang, **fields)

    def url(self, path: str, **query: str) -> str:
        return self.base + path + ("?" + urlencode(query) if query else "")

    def asset(self, name: str) -> str:
        found = render.static_file(name)
        assert found is not None, name
        return self.url(f"/static/{name}", v=found.version)

    def notice(self) -> str | None:
        """The words of `?done=...` after an action (only our own keys)."""
        key = "done." + self.query.get("done", "")
        return self.t(key) if key in catalogue.EN else None

    def render(
        self,
        template: str,
        *,
        status: int = 200,
        problems: forms.Problems | None = None,
        notice: str | None = None,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> Response:
        page = {
            "t": self.t,
            "url": self.url,
            "asset": self.asset,
            "csrf_field": lambda: Markup('<input type="hidden" name="csrf" value="{}">').format(
                self.csrf()
            ),
            "lang": self.lang,
            "page": self.page,
            "account": self.account,
            "domain": settings.get().sip_domain,
            "problems": problems or None,
            "notice": notice,
            "values": Values(),
            **context,
        }
        body = render.render(template, page)
        if problems:
            status = problems.status
            headers = {**problems.headers, **(headers or {})}
        return self.respond(
            body, status, {"Content-Type": "text/html; charset=utf-8", **(headers or {})}
        )

    def message(self, heading: str, body: str, status: int, **more: Any) -> Response:
        return self.render(
            "message.html",
            status=status,
            heading=heading,
            body=body,
            link=more.pop("link", "/"),
            link_text=more.pop("link_text", "message.home"),
            **more,
        )

    def redirect(self, path: str, **query: str) -> Response:
        """303 See Other: the browser GETs the page (a reload does not post again)."""
        return self.respond("", 303, {"Location": self.url(path, **query)})

    def respond(self, body: str, status: int, headers: dict[str, str]) -> Response:
        out: dict[str, str | list[str]] = {
            **security.HEADERS,
            "Cache-Control": "no-store",
            **headers,
        }
        if self.secure:
            out["Strict-Transport-Security"] = security.HSTS
        if self._set_cookies:
            out["Set-Cookie"] = list(self._set_cookies)
        return Response(body=body, status_code=status, headers=out)
