"""Linphone 6's sign-up flows (Android, iOS, desktop) against the account API, with requests
and answer handling built from liblinphone's `AccountManagerServices` as the linphone-6 README
describes it (no 6.x SDK is packaged here): its header order, jsoncpp's compact bodies with
members in name order, no Content-Type without a body, From only on accounts/me/*, digest on
401; an answer is read only if its Content-Type is exactly application/json and its body a
JSON object; errors pass `message` and the first text of each `errors` field to the app."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from chalice.test import Client

from chalicelib import accounts, clock
from chalicelib.live import registrar
from testkit.sms import last_code
from tests.accounts_support import challenges
from tests.flexiapi_support import APNS, FCM, digest_answer, push_apps, pushes  # noqa: F401

pytestmark = pytest.mark.usefixtures("push_apps")

ANDROID = "LinphoneAndroid/6.0.23 (Pixel 8) LinphoneSDK/5.4.30 (tags/5.4.30^0)"
IOS = "LinphoneiOS/6.0.3 (iPhone15,2) LinphoneSDK/5.4.30"
DESKTOP = "Linphone Desktop/6.1.2 (Debian GNU/Linux 12) LinphoneSDK/5.4.30"
PASSWORD = "my linphone password"


@dataclass
class Outcome:
    """What the SDK hands the app: success with its data, or an error with status, message and
    field errors. `callbacks` lists what fired, in order (a wrong Content-Type on a read
    success answer fires both, per the README)."""

    ok: bool
    status: int
    data: Any = None
    message: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    callbacks: list[str] = field(default_factory=list)


class Linphone6:
    """One app's AccountManagerServices: requests as it builds them, answers as it reads them."""

    def __init__(self, api: Client, user_agent: str, language: str | None = "fr") -> None:
        self.api = api
        self.user_agent = user_agent
        self.language = language
        self.identity: str | None = None
        self.password: str | None = None

    def request(self, method: str, route: str, params: dict[str, str] | None = None,
                *, reads: tuple[str, ...] = ()) -> Outcome:  # fmt: skip
        path = "/api/" + route
        headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        if route.startswith("accounts/me") and self.identity:
            headers["From"] = self.identity
        if self.language:
            headers["Accept-Language"] = self.language
        body = b""
        if params:
            body = json.dumps(params, separators=(",", ":"), sort_keys=True).encode()
            headers["Content-Type"] = "application/json"
        r = self._send(method, path, headers, body)
        if r.status_code == 401 and self.password and self.identity:
            user = self.identity.removeprefix("sip:").split("@")[0]
            for _ in range(2):  # belle-sip: at most two tries
                auth = digest_answer(challenges(r)[0], user, self.password, method, path)
                r = self._send(method, path, {**headers, "Authorization": auth}, body)
                if r.status_code != 401:
                    break
        return self._read(r, reads)

    def _send(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        call = getattr(self.api.http, method.lower())
        return call(path, headers=headers, body=body) if body else call(path, headers=headers)

    @staticmethod
    def _read(r: Any, reads: tuple[str, ...]) -> Outcome:
        exact = r.headers.get("Content-Type") == "application/json"
        if 200 <= r.status_code < 300:
            if not reads:
                return Outcome(True, r.status_code, callbacks=["success"])
            if not exact:
                return Outcome(True, r.status_code, callbacks=["error", "success"])
            data = json.loads(r.body) if r.body else None
            if data is not None and not isinstance(data, dict):
                return Outcome(False, r.status_code, callbacks=[])  # jsoncpp throws
            if isinstance(data, dict) and len(reads) == 1 and reads[0] != "*":
                data = data.get(reads[0])
            return Outcome(True, r.status_code, data, callbacks=["success"])
        assert exact, f"an error answer must be exactly application/json: {r.headers}"
        body = json.loads(r.body)
        errors = {k: v[0] for k, v in (body.get("errors") or {}).items()}
        return Outcome(False, r.status_code, None, body.get("message", ""), errors, ["error"])


def fcm_token(device: dict[str, str]) -> str:
    """Android: the data map as JSON text, `custom-payload` read as an object, its token."""
    (structure,) = [m for token, m in pushes() if token == device["pn_prid"]][-1:]
    data = json.loads(structure["GCM"])["fcmV1Message"]["message"]["android"]["data"]
    as_sdk_passes_it = json.dumps(data)
    return str(json.loads(json.loads(as_sdk_passes_it)["custom-payload"])["token"])


def apns_token(device: dict[str, str]) -> str:
    """iOS: a background notification, top-level `customPayload`, key `token`."""
    (structure,) = [m for token, m in pushes() if token == device["pn_prid"]][-1:]
    payload = json.loads(structure["APNS"])
    assert payload["aps"]["content-available"] == 1 and "alert" not in payload["aps"]
    return str(payload["customPayload"]["token"])


def sign_up(app: Linphone6, token: str, username: str, number: str) -> Outcome:
    created = app.request(
        "POST", "accounts/with-account-creation-token",
        {"account_creation_token": token, "algorithm": "SHA-256", "password": PASSWORD,
         "username": username},
        reads=("*",),
    )  # fmt: skip
    assert created.ok, created
    # The app builds the identity from the answer's members.
    app.identity = f"sip:{created.data['username']}@{created.data['domain']}"
    app.password = PASSWORD
    sent = app.request("POST", "accounts/me/phone/request", {"phone": number})
    assert sent.ok, sent
    return app.request("POST", "accounts/me/phone", {"code": last_code(number)})


def test_android_sign_up(api):
    app = Linphone6(api, ANDROID)
    pushed = app.request("POST", "account_creation_tokens/send-by-push", FCM)
    assert pushed.ok and pushed.status == 200
    linked = sign_up(app, fcm_token(FCM), "anna", "+33622222222")
    assert linked.ok, linked
    account = accounts.get_by_username("anna")
    assert account.activated and account.phone == "+33622222222"


def test_ios_sign_up(api):
    app = Linphone6(api, IOS, language="fr_FR")
    assert app.request("POST", "account_creation_tokens/send-by-push", APNS).ok
    assert sign_up(app, apns_token(APNS), "ines", "+33633333333").ok


def test_desktop_sign_up_with_a_request_token(api):
    from chalicelib.accounts import app_signup

    app = Linphone6(api, DESKTOP, language=None)
    asked = app.request("POST", "account_creation_request_tokens", reads=("validation_url",))
    assert asked.ok and asked.status == 201
    request_token = asked.data.rsplit("/", 1)[1]  # the text after the URL's last /
    trade = {"account_creation_request_token": request_token}
    route = "account_creation_tokens/using-account-creation-request-token"
    waiting = app.request("POST", route, trade, reads=("token",))
    # An error without `errors`: the app asks again 2 s later.
    assert not waiting.ok and waiting.errors == {} and waiting.status == 404
    assert app_signup.validate_request_token(request_token)
    traded = app.request("POST", route, trade, reads=("token",))
    assert traded.ok and traded.status == 201
    assert sign_up(app, traded.data, "dora", "+33644444444").ok


def test_field_errors_reach_the_app_as_it_shows_them(api):
    app = Linphone6(api, ANDROID)
    refused = app.request("POST", "account_creation_tokens/send-by-push",
                          {**FCM, "pn_provider": "hms"})  # fmt: skip
    assert (refused.status, list(refused.errors)) == (422, ["pn_provider"])
    assert refused.message
    app.request("POST", "account_creation_tokens/send-by-push", FCM)
    created = app.request(
        "POST", "accounts/with-account-creation-token",
        {"account_creation_token": fcm_token(FCM), "algorithm": "SHA-256", "password": "x",
         "username": "Anna!"},
        reads=("*",),
    )  # fmt: skip
    # The fields the Android app shows under its inputs: username, password, phone.
    assert set(created.errors) == {"username"} and created.status == 422
    app.request("POST", "accounts/with-account-creation-token",
                {"account_creation_token": fcm_token(FCM), "algorithm": "SHA-256",
                 "password": PASSWORD, "username": "anna"}, reads=("*",))  # fmt: skip
    app.identity, app.password = "sip:anna@example.org", PASSWORD
    bad = app.request("POST", "accounts/me/phone/request", {"phone": "0612"})
    assert (bad.status, list(bad.errors)) == (422, ["phone"])
    app.request("POST", "accounts/me/phone/request", {"phone": "+33622222222"})
    wrong = app.request("POST", "accounts/me/phone", {"code": "0000"})
    if last_code("+33622222222") != "0000":
        assert (wrong.status, list(wrong.errors)) == (422, ["code"])


def test_devices_list_and_delete_as_the_settings_screen_does(api):
    app = Linphone6(api, ANDROID)
    app.request("POST", "account_creation_tokens/send-by-push", FCM)
    assert sign_up(app, fcm_token(FCM), "anna", "+33622222222").ok
    none = app.request("GET", "accounts/me/devices", reads=("*",))
    assert none.ok and none.data == {}
    instance = "urn:uuid:5f1c0c4e-8d1a-4b0e-9a57-0e3c2f6d7a10"
    registrar.register(
        "anna@example.org",
        [registrar.ContactRequest(uri="sip:anna@192.0.2.4:5060", instance=f'"<{instance}>"')],
        call_id="c", cseq=1, expires_header=600, user_agent=ANDROID,
    )  # fmt: skip
    listed = app.request("GET", "accounts/me/devices", reads=("*",))
    assert listed.ok and list(listed.data) == [instance]
    device = listed.data[instance]
    # update_time: ISO 8601 the SDK parses (a fraction would be stripped); the device name is
    # the User-Agent's text in its first parentheses; a phone icon for LinphoneAndroid.
    stamp = device["update_time"].split(".")[0].rstrip("Z")
    assert abs(clock.now() - _parse(stamp)) < 5
    assert device["user_agent"].split("(", 1)[1].split(")", 1)[0] == "Pixel 8"
    gone = app.request("DELETE", f"accounts/me/devices/{instance}", {"device_uuid": instance})
    assert gone.ok
    assert app.request("GET", "accounts/me/devices", reads=("*",)).data == {}


def _parse(stamp: str) -> float:
    from datetime import UTC, datetime

    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()


def test_every_answer_is_one_linphone_6_can_read(api):
    """Wrong credentials past two tries, unknown routes' neighbours, refusals: each an error
    the SDK reads (exact Content-Type, a JSON object with a message)."""
    app = Linphone6(api, ANDROID)
    app.identity, app.password = "sip:nobody@example.org", "not a password"
    for method, route in [("GET", "accounts/me/devices"), ("GET", "accounts/me/provision"),
                          ("POST", "accounts/me/phone")]:  # fmt: skip
        outcome = app.request(method, route, {"code": "1234"} if method == "POST" else None)
        assert (outcome.ok, outcome.status, outcome.message) == (False, 401, "Unauthenticated.")
