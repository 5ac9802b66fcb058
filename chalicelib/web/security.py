"""What every web response and form carries for safety: the security headers, the cookies'
attributes, and CSRF tokens.

Cookies are `HttpOnly`, `SameSite=Strict`, `Path=/`, and `Secure` with a `__Host-` name
whenever the browser came over HTTPS (always behind API Gateway); only a browser on the
loopback address over plain HTTP (`make run`) gets them without, since it would drop a Secure
cookie there. A CSRF token is a keyed hash of what the browser's cookie binds its forms to: the
session when signed in, else a random value in a cookie of its own (so sign-up and sign-in
forms are protected too, and nothing is stored for a visitor). Tokens are compared in constant
time; none of these values is ever logged.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Iterable, Mapping

from chalicelib import digest, settings

#: Sent with every page and file. No inline script or style anywhere (the pages use one
#: script and one stylesheet of their own); no framing; forms post only here.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    # Nothing of our URLs to other sites; same-origin requests keep theirs (and their Origin).
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
HSTS = "max-age=31536000"

SESSION = "session"
ANONYMOUS = "form"
#: Random bytes of the anonymous forms cookie.
ANONYMOUS_BYTES = 24
_LOOPBACK_NAMES = frozenset({"localhost"})


def is_secure(headers: Mapping[str, str]) -> bool:
    """Whether the browser reached us over HTTPS: API Gateway says so in X-Forwarded-Proto;
    without it, anything but a loopback host is taken as HTTPS (a Secure cookie is the safe
    mistake: it is dropped, never leaked)."""
    proto = (headers.get("x-forwarded-proto") or "").strip().lower()
    if proto:
        return proto == "https"
    host = (headers.get("host") or "").strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host in _LOOPBACK_NAMES:
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def cookie_name(base: str, secure: bool) -> str:
    """`__Host-` names promise Secure, Path=/ and no Domain, and browsers hold us to it."""
    return f"__Host-{base}" if secure else base


def set_cookie(name: str, value: str, *, secure: bool, max_age: int | None = None) -> str:
    """A Set-Cookie value. Without `max_age` the cookie lasts until the browser closes; the
    server's own expiry applies either way."""
    parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts)


def clear_cookie(name: str, *, secure: bool) -> str:
    return set_cookie(name, "", secure=secure, max_age=0)


def read_cookies(headers: Mapping[str, str]) -> dict[str, str]:
    """The request's cookies (the first of each name)."""
    found: dict[str, str] = {}
    for part in (headers.get("cookie") or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in found:
            found[name] = value.strip().strip('"')
    return found


def new_anonymous_value() -> str:
    return secrets.token_urlsafe(ANONYMOUS_BYTES)


def _key() -> str:
    return "web-csrf|" + settings.get().code_hash_key


def csrf_token(binding: str) -> str:
    """The token a form carries for a browser whose cookie binds it to `binding`."""
    return digest.keyed_hash(_key(), binding, length=48)


def csrf_ok(given: str | None, bindings: Iterable[str]) -> bool:
    """Whether `given` is the token of one of the browser's bindings."""
    if not given:
        return False
    ok = False
    for binding in bindings:
        ok = hmac.compare_digest(given.encode(), csrf_token(binding).encode()) or ok
    return ok


def anonymous_binding(value: str) -> str:
    # Apart from session keys: the two kinds of binding never give the same token.
    return "anonymous|" + value
