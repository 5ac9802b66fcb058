"""Remote provisioning of the Linphone apps: the XML configuration a phone fetches from a link
(its `[misc] config-uri`, usually scanned as a QR code) instead of its user typing settings.

Two documents, in Linphone's lpconfig XML (`config` / `section` / `entry`):

- for people without an account yet (`anonymous_document`), at one fixed link: the SIP domain,
  the list subscription URI, the server address new accounts use, and the account assistant
  (FlexiAPI backend and URL, the XML-RPC URL for older apps, the username and password rules);
- for one account (`account_document`), behind a per-device link (`issue_link`): the same,
  plus the account itself, its server address and transport, and its digest credentials as
  an HA1 with its algorithm, never a password. Such a link is issued only to the account,
  signed in; it is short-lived and used once (`tokens`), and the document tells the app to
  forget it after a success (`transient_provisioning`), since every later start would
  otherwise fetch a dead link.

Every entry carries `overwrite="true"`: the SDK writes an entry without it only when the key is
absent from the phone's configuration, so a later fetch could not change it. QR codes of the
links come from `segno` (PNG and SVG, pure Python).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import phonenumbers
from lxml import etree

from chalicelib import accounts, settings
from chalicelib.accounts import rate_limits, tokens
from chalicelib.digest import keyed_hash
from chalicelib.errors import DomainError
from chalicelib.observability import logger, pseudonym

NAMESPACE = "http://www.linphone.org/xsds/lpconfig.xsd"
#: The account API's path under the public URL (FlexiAPI serves `<host>/api/<route>`).
API_PATH = "/api/"
LINK_PATH = "/provisioning"
XMLRPC_PATH = "/wizard.php"
CONTENT_TYPE = "application/xml"
#: `[account_creator] backend`: 1 is FlexiAPI (0, the SDK's default, XML-RPC).
FLEXIAPI_BACKEND = "1"
#: The algorithm the apps are told to make HA1s with (FlexiAPI and Linphone 6 use SHA-256).
ALGORITHM = "SHA-256"
#: What an app accepts as a username before asking (accounts.USERNAME_RE, for the assistant).
USERNAME_REGEX = "^[a-z0-9._-]*$"

Entries = list[tuple[str, str]]


@dataclass(frozen=True)
class Link:
    """A provisioning link just issued to an account: its URL (the QR code's text)."""

    url: str
    token: str
    expires_at: int


def _api_url(base_url: str) -> str:
    return base_url.rstrip("/") + API_PATH


def anonymous_url(base_url: str) -> str:
    """The fixed link that configures an app for this service, without an account."""
    return base_url.rstrip("/") + LINK_PATH


def link_url(base_url: str, token: str) -> str:
    return f"{anonymous_url(base_url)}/{token}"


def _proxy() -> str:
    uri = settings.get().provisioned_proxy
    return uri if uri.startswith("<") else f"<{uri}>"


def _document(sections: list[tuple[str, Entries]]) -> bytes:
    root = etree.Element(etree.QName(NAMESPACE, "config"), nsmap={None: NAMESPACE})
    for name, entries in sections:
        section = etree.SubElement(root, etree.QName(NAMESPACE, "section"), name=name)
        for key, value in entries:
            entry = etree.SubElement(
                section, etree.QName(NAMESPACE, "entry"), name=key, overwrite="true"
            )
            entry.text = value
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def _common(base_url: str, sip: Entries | None = None) -> list[tuple[str, Entries]]:
    s = settings.get()
    domain = accounts.domain()
    return [
        ("sip", [*(sip or []), ("rls_uri", s.provisioned_rls_uri)]),
        ("net", [("friendlist_subscription_enabled", "1")]),
        ("account_creator", [("backend", FLEXIAPI_BACKEND), ("url", _api_url(base_url))]),
        (
            "assistant",
            [
                ("domain", domain),
                ("algorithm", ALGORITHM),
                ("xmlrpc_url", base_url.rstrip("/") + XMLRPC_PATH),
                ("password_min_length", str(s.password_min_length)),
                ("username_regex", USERNAME_REGEX),
                ("username_min_length", "3"),
                ("username_max_length", "64"),
            ],
        ),
    ]


def _proxy_entries() -> Entries:
    proxy = _proxy()
    return [
        ("reg_proxy", proxy),
        ("reg_route", proxy),
        ("realm", accounts.domain()),
        ("reg_expires", "3600"),
        ("reg_sendregister", "1"),
        ("publish", "0"),
        ("dial_escape_plus", "0"),
    ]


def anonymous_document(base_url: str) -> bytes:
    """The configuration for an app without an account: domain, list URI, server address of
    the accounts it will make (`proxy_default_values`) and the account assistant."""
    return _document([*_common(base_url), ("proxy_default_values", _proxy_entries())])


def _dial_prefix(account: accounts.Account) -> str | None:
    """The account's country calling code: the SDK writes national numbers of the address
    book in its country with it."""
    if not account.phone:
        return None
    try:
        return str(phonenumbers.parse(account.phone, None).country_code)
    except phonenumbers.NumberParseException:
        return None


def account_document(
    account: accounts.Account, base_url: str, *, algorithm: str | None = None
) -> bytes:
    """The configuration of one account: identity, server address and transport, its HA1 in
    `algorithm` (default: SHA-256 when it has one), list URI, assistant; then forget the link."""
    ha1s = account.ha1s()
    chosen = algorithm or ("SHA-256" if "SHA-256" in ha1s else "MD5")
    if chosen not in ha1s:
        raise DomainError("unsupported_algorithm", f"this account has no {chosen} credentials")
    proxy = [("reg_identity", account.sip_uri), *_proxy_entries()]
    prefix = _dial_prefix(account)
    if prefix:
        proxy.append(("dial_prefix", prefix))
    auth = [
        ("username", account.username),
        ("ha1", ha1s[chosen]),
        ("realm", account.domain),
        ("domain", account.domain),
        ("algorithm", chosen),
    ]
    return _document(
        [
            ("proxy_0", proxy),
            ("auth_info_0", auth),
            *_common(base_url, [("default_proxy", "0")]),
            ("misc", [("transient_provisioning", "1")]),
        ]
    )


def issue_link(account: accounts.Account, base_url: str) -> Link:
    """A new single-use provisioning link for `account` (its owner, signed in), within
    `PROVISIONING_LINKS_PER_ACCOUNT_HOURLY` (429 past it). A pending account gets none (403):
    its phones could not sign in until it has a number."""
    if not account.activated:
        raise DomainError("account_pending", "link a phone number to the account first")
    s = settings.get()
    rate_limits.reserve_in_window(
        "provisioning-links:" + keyed_hash(s.code_hash_key, account.aor, length=32),
        limit=s.provisioning_links_per_account_hourly,
        window=rate_limits.HOUR,
        what="provisioning links of this account",
    )
    token = tokens.issue(tokens.PROVISIONING, {"aor": account.aor}, s.provisioning_ttl)
    logger.info("provisioning link issued", extra={"aor": pseudonym(account.aor)})
    return Link(link_url(base_url, token.value), token.value, token.expires_at)


def fetch(token: object, base_url: str, *, source: str, user_agent: str) -> bytes:
    """The document of a provisioning link, using it (404 `not_found` for an unknown, used or
    expired link, or one whose account is gone). The same device (address and User-Agent)
    fetching again within `PROVISIONING_RETRY_SECONDS` gets it again."""
    try:
        used = tokens.use(
            tokens.PROVISIONING,
            token,
            fingerprint=tokens.fingerprint(source, user_agent),
            replay_window=settings.get().provisioning_retry_seconds,
        )
    except DomainError as exc:
        if exc.code == "token_invalid":
            raise _no_such_link() from None
        raise
    account = accounts.get(str(used.data["aor"]))
    if account is None or account.disabled or not account.activated:
        raise _no_such_link()
    logger.info("provisioning link used", extra={"aor": pseudonym(account.aor)})
    return account_document(account, base_url)


def _no_such_link() -> DomainError:
    return DomainError("not_found", "no such provisioning link: it may have expired or been used")


def qr_png(text: str, *, scale: int = 8) -> bytes:
    """A QR code of `text` as PNG (quiet zone of 4 modules, as phones' scanners expect)."""
    import segno

    out = io.BytesIO()
    segno.make(text, error="m", micro=False).save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def qr_svg(text: str, *, scale: int = 8) -> str:
    """The same QR code as a standalone SVG document."""
    import segno

    out = io.BytesIO()
    segno.make(text, error="m", micro=False).save(
        out, kind="svg", scale=scale, border=4, xmldecl=False, title=text
    )
    return out.getvalue().decode()
