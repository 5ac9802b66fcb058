"""Remote provisioning: the XML documents (lpconfig: every entry overwrite="true", an HA1 with
its algorithm and never a password), the anonymous link, single-use per-device links issued
only to their account, and their QR codes (PNG, SVG)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from lxml import etree

from chalicelib import accounts, settings
from chalicelib.accounts import provisioning
from tests.accounts_support import basic, digest_header
from tests.conftest import INTEROP, advance_clock

PASSWORD = "a long password"
NS = {"c": provisioning.NAMESPACE}
UA_51 = "Unknown"  # what a 5.1 core that set no user agent sends (provisioning/*.txt)


def entries(document: bytes) -> dict[str, str]:
    """{"section/key": value} of an lpconfig document, checking every entry overwrites."""
    root = etree.fromstring(document)
    assert etree.QName(root).localname == "config"
    out = {}
    for entry in root.iterfind("c:section/c:entry", NS):
        assert entry.get("overwrite") == "true", entry.get("name")
        out[f"{entry.getparent().get('name')}/{entry.get('name')}"] = entry.text or ""
    return out


def make(username: str = "alice", phone: str | None = "+33611111111", **kw: Any):
    return accounts.create(
        username, accounts.credentials_from_password(username, PASSWORD), phone_e164=phone, **kw
    )


def link_for(api, username: str = "alice", algorithm: str | None = None) -> dict[str, Any]:
    """A link asked with Basic, or Digest of `algorithm` (Basic would teach an account made
    from one HA1 its other one)."""
    path = "/v1/accounts/me/provisioning"
    headers = basic(username, PASSWORD)
    if algorithm:
        challenge = api.http.post(path).headers["WWW-Authenticate"]
        offered = [c for c in challenge if f"algorithm={algorithm}," in c]
        headers = digest_header(offered[0], username, PASSWORD, "POST", path)
    r = api.http.post(path, headers=headers)
    assert r.status_code == 201, r.body
    return dict(r.json_body)


def path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def test_the_anonymous_document_configures_the_domain_lists_and_assistant(api):
    r = api.http.get("/provisioning", headers={"User-Agent": UA_51, "Host": "api.example.org"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/xml"
    found = entries(r.body)
    assert found["sip/rls_uri"] == "sip:rls@example.org"
    assert found["account_creator/backend"] == "1"
    assert found["account_creator/url"] == "http://api.example.org/api/"
    assert found["assistant/domain"] == "example.org"
    assert found["assistant/algorithm"] == "SHA-256"
    assert found["assistant/xmlrpc_url"] == "http://api.example.org/wizard.php"
    assert found["proxy_default_values/reg_proxy"] == "<sip:127.0.0.1:5060;transport=tcp>"
    assert found["net/friendlist_subscription_enabled"] == "1"
    assert not any(k.startswith(("proxy_0/", "auth_info_0/")) for k in found)
    assert "misc/transient_provisioning" not in found  # fetched again at each start


def test_settings_name_the_public_url_and_the_sip_proxy(api, monkeypatch):
    monkeypatch.setenv("PUBLIC_URL", "https://contacts.example.org/prod/")
    monkeypatch.setenv("SIP_PROXY_URI", "sips:sip.example.org:5061;transport=tls")
    monkeypatch.setenv("RLS_URI", "sip:list@example.org")
    settings.get.cache_clear()
    found = entries(api.http.get("/provisioning").body)
    assert found["account_creator/url"] == "https://contacts.example.org/prod/api/"
    assert found["proxy_default_values/reg_route"] == "<sips:sip.example.org:5061;transport=tls>"
    assert found["sip/rls_uri"] == "sip:list@example.org"


def test_the_stage_path_of_api_gateway_is_kept(api):
    from chalice.app import Request

    from chalicelib.api import http_api

    request = Request(
        {
            "multiValueQueryStringParameters": None,
            "headers": {"host": "abc.execute-api.eu-west-1.amazonaws.com",
                        "x-forwarded-proto": "https"},
            "pathParameters": None,
            "requestContext": {"httpMethod": "GET", "resourcePath": "/provisioning",
                               "path": "/dev/provisioning"},
            "body": None,
            "isBase64Encoded": False,
            "stageVariables": None,
        }
    )  # fmt: skip
    request.path = "/provisioning"  # type: ignore[misc]
    assert http_api.public_base_url(request) == (
        "https://abc.execute-api.eu-west-1.amazonaws.com/dev"
    )


@pytest.mark.parametrize(
    ("credentials", "algorithm"),
    [("password", "SHA-256"), ("md5-ha1", "MD5")],
)
def test_an_account_link_configures_the_account_with_its_ha1(api, credentials, algorithm):
    if credentials == "password":
        make()
    else:  # an account imported from an MD5 HA1 alone
        md5 = hashlib.md5(f"alice:example.org:{PASSWORD}".encode()).hexdigest()
        accounts.create(
            "alice", accounts.credentials_from_ha1(md5, "MD5"), phone_e164="+33611111111"
        )
    link = link_for(api, algorithm=algorithm)
    assert link["expires_in"] == settings.get().provisioning_ttl
    r = api.http.get(path_of(link["url"]), headers={"User-Agent": UA_51})
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    found = entries(r.body)
    account = accounts.get_by_username("alice")
    assert found["proxy_0/reg_identity"] == "sip:alice@example.org"
    assert found["proxy_0/reg_sendregister"] == "1"
    assert found["proxy_0/dial_prefix"] == "33"
    assert found["auth_info_0/username"] == "alice"
    assert found["auth_info_0/algorithm"] == algorithm
    assert found["auth_info_0/ha1"] == account.ha1s()[algorithm]
    assert found["auth_info_0/realm"] == found["auth_info_0/domain"] == "example.org"
    assert found["sip/default_proxy"] == "0"
    assert found["misc/transient_provisioning"] == "1"
    assert PASSWORD.encode() not in r.body and b"passwd" not in r.body


def test_a_link_is_used_once_except_by_the_same_device_at_once(api):
    make()
    url = path_of(link_for(api)["url"])
    assert api.http.get(url, headers={"User-Agent": UA_51}).status_code == 200
    # The same device asking again at once (its answer was lost): the document again.
    assert api.http.get(url, headers={"User-Agent": UA_51}).status_code == 200
    other = api.http.get(url, headers={"User-Agent": "LinphoneiOS/6.0"})
    assert other.status_code == 404 and other.json_body["error"]["code"] == "not_found"
    advance_clock(settings.get().provisioning_retry_seconds + 1)
    assert api.http.get(url, headers={"User-Agent": UA_51}).status_code == 404


def test_dead_links_are_alike(api):
    make()
    expired = path_of(link_for(api)["url"])
    advance_clock(settings.get().provisioning_ttl + 1)
    deleted = path_of(link_for(api)["url"])
    accounts.delete("alice@example.org")
    disabled_user = make("bob", "+33612345678")
    disabled = path_of(link_for(api, "bob")["url"])
    accounts.set_disabled(disabled_user.aor, True)
    answers = [
        api.http.get(p, headers={"User-Agent": UA_51})
        for p in (expired, deleted, disabled, "/provisioning/" + "x" * 22, "/provisioning/%2e%2e")
    ]
    assert {(r.status_code, r.body) for r in answers} == {(404, answers[0].body)}


def test_a_link_is_issued_only_to_its_account_signed_in(api):
    make()
    r = api.http.post("/v1/accounts/me/provisioning")
    assert r.status_code == 401
    r = api.http.post("/v1/accounts/me/provisioning", headers=basic("alice", "wrong password"))
    assert r.status_code == 401
    challenge = api.http.post("/v1/accounts/me/provisioning").headers["WWW-Authenticate"]
    first = challenge[0] if isinstance(challenge, list) else challenge
    signed = digest_header(first, "alice", PASSWORD, "POST", "/v1/accounts/me/provisioning")
    assert api.http.post("/v1/accounts/me/provisioning", headers=signed).status_code == 201


def test_links_are_budgeted_per_account(api):
    make()
    for _ in range(settings.get().provisioning_links_per_account_hourly):
        link_for(api)
    r = api.http.post("/v1/accounts/me/provisioning", headers=basic("alice", PASSWORD))
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


def test_qr_codes_in_png_and_svg(api):
    # A binary answer needs an Accept naming it (API Gateway's rule; browsers send */*).
    png = api.http.get("/provisioning/qrcode", headers={"Accept": "image/png"})
    assert png.status_code == 200 and png.headers["Content-Type"] == "image/png"
    assert api.http.get("/provisioning/qrcode", headers={"Accept": "*/*"}).status_code == 200
    assert png.body.startswith(b"\x89PNG\r\n\x1a\n")
    svg = api.http.get("/provisioning/qrcode?format=svg", headers={"Host": "api.example.org"})
    assert svg.headers["Content-Type"] == "image/svg+xml"
    root = etree.fromstring(svg.body)
    assert etree.QName(root).localname == "svg"
    assert (
        root.findtext("{http://www.w3.org/2000/svg}title") == "http://api.example.org/provisioning"
    )
    assert api.http.get("/provisioning/qrcode?format=gif").status_code == 400
    make()
    link = link_for(api)
    token = link["url"].rsplit("/", 1)[1]
    assert link["qrcode_svg_data"].startswith("data:image/svg+xml;base64,")
    drawn = api.http.get(f"/provisioning/qrcode/{token}?format=svg")
    assert drawn.status_code == 200 and token.encode() in drawn.body
    # Drawing a link does not use it; a dead or unknown one is never drawn.
    assert api.http.get(path_of(link["url"]), headers={"User-Agent": UA_51}).status_code == 200
    assert api.http.get(f"/provisioning/qrcode/{token}?format=svg").status_code == 404
    assert (
        api.http.get("/provisioning/qrcode/" + "y" * 22, headers={"Accept": "*/*"}).status_code
        == 404
    )


def test_the_qr_code_encodes_the_link():
    import segno

    url = "https://api.example.org/provisioning/abc"
    assert segno.make(url, error="m", micro=False).designator.endswith("-M")
    assert provisioning.qr_svg(url).count("<title>") == 1
    assert provisioning.qr_png(url) == provisioning.qr_png(url)  # deterministic


def test_the_captured_51_provisioning_request_is_served(api):
    """The request the real 5.1 core sends (provisioning/user-agent.txt): GET, User-Agent, Host;
    no Accept, no device id."""
    capture = (INTEROP / "provisioning" / "user-agent.txt").read_text()
    request = capture.split("=== HTTP request 1", 1)[1].split("=== answer 1", 1)[0]
    lines = [line for line in request.splitlines()[1:] if line.strip()]
    assert lines[0] == "GET /provisioning/alice.xml HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    headers.pop("Host")
    assert set(headers) == {"User-Agent"}
    r = api.http.get("/provisioning", headers=headers)
    assert r.status_code == 200 and entries(r.body)["assistant/domain"] == "example.org"


def test_linphone_6_adds_its_provisioning_header(api):
    headers = {"X-Linphone-Provisioning": "1", "User-Agent": "LinphoneAndroid/6.0.1 (Pixel 8)"}
    assert api.http.get("/provisioning", headers=headers).status_code == 200
