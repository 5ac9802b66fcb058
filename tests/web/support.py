"""A browser without JavaScript for the web pages' HTTP tests: chalice's test client with a
cookie jar, that reads the pages' forms (their hidden fields and CSRF token) and submits them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import lxml.html
from chalice.test import Client

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
LOOPBACK = "127.0.0.1:8000"


@dataclass
class Page:
    status: int
    headers: dict[str, Any]
    body: str

    @property
    def doc(self) -> Any:
        return lxml.html.fromstring(self.body or "<html></html>")

    @property
    def location(self) -> str:
        return str(self.headers.get("Location", ""))

    def text(self) -> str:
        return " ".join(self.doc.text_content().split())

    def form(self, action: str) -> Any:
        forms = [f for f in self.doc.forms if (f.get("action") or "").endswith(action)]
        assert forms, f"no form posting to {action} in {self.body[:2000]}"
        return forms[0]

    def errors(self) -> dict[str, str]:
        """Field id -> the error shown next to it."""
        return {
            p.get("id").removesuffix("-error"): " ".join(p.text_content().split())
            for p in self.doc.xpath("//p[@class='error']")
        }

    def summary(self) -> list[str]:
        return [
            " ".join(li.text_content().split())
            for li in self.doc.xpath("//div[contains(@class,'error-summary')]//li")
        ]


@dataclass
class Visitor:
    client: Client
    host: str = LOOPBACK
    extra: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    set_cookies: list[str] = field(default_factory=list)

    def _headers(self, more: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Host": self.host, **self.extra, **(more or {})}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    def _keep(self, response: Any) -> Page:
        raw = response.headers.get("Set-Cookie") or []
        for value in raw if isinstance(raw, list) else [raw]:
            self.set_cookies.append(value)
            name, _, rest = value.partition("=")
            cookie_value = rest.split(";", 1)[0]
            if "Max-Age=0" in value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = cookie_value
        body = response.body.decode() if isinstance(response.body, bytes) else response.body
        return Page(response.status_code, dict(response.headers), body or "")

    def get(self, path: str) -> Page:
        return self._keep(self.client.http.get(path, headers=self._headers()))

    def post(
        self, path: str, fields: dict[str, str], headers: dict[str, str] | None = None
    ) -> Page:
        response = self.client.http.post(
            path, headers=self._headers({**FORM, **(headers or {})}), body=urlencode(fields)
        )
        return self._keep(response)

    def submit(self, page: Page, action: str, **fields: str) -> Page:
        """Fill the page's form posting to `action` and send it (its hidden fields kept)."""
        form = page.form(action)
        values: dict[str, str] = {}
        for i in form.xpath(".//input[@name]"):
            kind = i.get("type") or "text"
            if kind in ("hidden", "text", "tel") or (
                kind == "radio" and i.get("checked") is not None
            ):
                values[i.get("name")] = i.get("value") or ""
        for select in form.xpath(".//select"):
            chosen = select.xpath(".//option[@selected]")
            values[select.get("name")] = chosen[0].get("value") if chosen else ""
        values.update(fields)
        return self.post(urlsplit(form.get("action")).path, values)

    def follow(self, page: Page) -> Page:
        assert page.status == 303, (page.status, page.body[:500])
        return self.get(page.location)
