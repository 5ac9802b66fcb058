"""The requests the real Linphone SDK 5.1 sent on its FlexiAPI backend (tests/data/interop/
linphone-5.1/flexiapi/), replayed as captured (headers, bodies; the base path `/flexiapi/api/`
becomes ours, `/api/`), answered as the SDK needs: a JSON body on every 2xx (an empty one
crashed it: send_token.txt, link_account.txt), 422 where a field is refused (its
MissingArguments), Digest challenges it answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib import accounts, digest
from testkit.sms import last_code
from tests.accounts_support import challenges
from tests.conftest import INTEROP
from tests.flexiapi_support import push_apps, pushed_token  # noqa: F401  (push_apps: fixture)

pytestmark = pytest.mark.usefixtures("push_apps")
CAPTURES = INTEROP / "flexiapi"


def captured(name: str, n: int = 1) -> tuple[str, str, dict[str, str], bytes]:
    """Request `n` of a capture: method, path (on our base), headers (Host and
    Content-Length dropped: the client sets them), body."""
    text = (CAPTURES / name).read_text()
    block = text.split(f"=== request {n}, ", 1)[1].split("\n", 1)[1]
    block = block.split("=== answer", 1)[0].split("\n--- fake's", 1)[0]
    head, _, body = block.partition("\n\n")
    lines = head.splitlines()
    method, path, _ = lines[0].split(" ")
    headers = {}
    for line in lines[1:]:
        key, value = line.split(":", 1)
        if key not in ("Host", "Content-Length", "Authorization"):
            headers[key] = value.strip()
    return method, path.replace("/flexiapi/api/", "/api/", 1), headers, body.strip().encode()


def send(api: Any, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> Any:
    call = getattr(api.http, method.lower())
    return call(path, headers=headers, body=body) if body else call(path, headers=headers)


def answer_challenge(api: Any, first: Any, method: str, path: str, headers: dict[str, str],
                     body: bytes, username: str, password: str) -> Any:  # fmt: skip
    """Retry as the SDK does: the first challenge it can answer (with a clear password)."""
    assert first.status_code == 401
    params = digest.parse_params(challenges(first)[0])
    ha1 = digest.ha1(params["algorithm"], username, params["realm"], password)
    response = digest.expected_response(
        params["algorithm"], ha1, method, path, params["nonce"], qop="auth", nc="00000001",
        cnonce="qfn851M8kjobViFZ",
    )  # fmt: skip
    auth = (
        f'Digest realm="{params["realm"]}", nonce="{params["nonce"]}", '
        f'algorithm="{params["algorithm"]}", username="{username}", response="{response}", '
        f'cnonce="qfn851M8kjobViFZ", nc=00000001, qop=auth, uri="{path}"'
    )
    return send(api, method, path, {**headers, "Authorization": auth}, body)


def json_2xx(r: Any) -> Any:
    assert 200 <= r.status_code < 300, r.body
    assert r.body and r.headers["Content-Type"] == "application/json"
    return json.loads(r.body)


def bob(password: str = "secret") -> accounts.Account:
    # The captures' bob has a 6-character password: made from its HA1, as an import would.
    ha1 = digest.ha1("SHA-256", "bob", "example.org", password)
    return accounts.create("bob", accounts.credentials_from_ha1(ha1, "SHA-256"))


def test_send_token_as_captured(api):
    method, path, headers, body = captured("send_token.txt")
    assert (method, path) == ("POST", "/api/tokens")
    assert json_2xx(send(api, method, path, headers, body)) == {}
    assert pushed_token("f00dcafe:APA91bE-0123")


def test_create_with_token_as_captured(api):
    method, path, headers, body = captured("send_token.txt")
    send(api, method, path, headers, body)
    token = pushed_token("f00dcafe:APA91bE-0123")
    method, path, headers, body = captured("create_with_token.txt")
    data = json.loads(body)
    assert path == "/api/accounts/with-token" and set(data) == {
        "algorithm", "domain", "password", "token", "username"}  # fmt: skip
    data["token"] = token
    # Its 6-character password is under this service's minimum: refused on the field (the
    # SDK's MissingArguments), the token kept for the next try.
    r = send(api, method, path, headers, json.dumps(data).encode())
    assert r.status_code == 422 and "password" in r.json_body["errors"]
    data["password"] = "a longer s3cret"
    created = json_2xx(send(api, method, path, headers, json.dumps(data).encode()))
    assert (created["username"], created["activated"]) == ("alice", False)


@pytest.mark.parametrize("name", ["is_account_exist.txt", "is_account_activated.txt"])
def test_info_as_captured_tells_a_stranger_nothing(api, name):
    bob()
    method, path, headers, _ = captured(name)
    assert "From" not in headers
    r = send(api, method, path, headers)
    assert r.status_code == 404  # bob exists: the SDK reports AccountNotExist, as for anyone


def test_link_account_as_captured_gets_a_body(api):
    bob()
    method, path, headers, body = captured("link_account.txt")
    first = send(api, method, path, headers, body)
    r = answer_challenge(api, first, method, path, headers, body, "bob", "secret")
    assert json_2xx(r) == {}  # FlexiAPI's empty 200 crashed the SDK here
    method, path, headers, body = captured("activate_alias.txt")
    body = json.dumps({"code": last_code("+33612345678")}).encode()
    first = send(api, method, path, headers, body)
    linked = json_2xx(answer_challenge(api, first, method, path, headers, body, "bob", "secret"))
    assert (linked["phone"], linked["activated"]) == ("+33612345678", True)


def test_update_password_as_captured_reads_the_swapped_fields(api):
    bob()
    method, path, headers, body = captured("update_password.txt")
    assert json.loads(body) == {"algorithm": "SHA-256", "old_password": "n3wpass",
                                "password": "secret"}  # fmt: skip
    first = send(api, method, path, headers, body)
    r = answer_challenge(api, first, method, path, headers, body, "bob", "secret")
    # `password` is the current one, so `old_password` is the new one: 7 characters, refused
    # on that field, not as a wrong old password.
    assert r.status_code == 422 and "password" in r.json_body["errors"], r.body
    body = json.dumps({"algorithm": "SHA-256", "old_password": "n3w longer pass",
                       "password": "secret"}).encode()  # fmt: skip
    first = send(api, method, path, headers, body)
    json_2xx(answer_challenge(api, first, method, path, headers, body, "bob", "secret"))
    assert accounts.check_password(accounts.get_by_username("bob"), "n3w longer pass")


def test_delete_as_captured(api):
    bob()
    method, path, headers, _ = captured("delete_account.txt")
    first = send(api, method, path, headers)
    assert json_2xx(answer_challenge(api, first, method, path, headers, b"", "bob", "secret")) == {}
    assert accounts.get_by_username("bob") is None


def test_no_default_account_means_no_from_and_422_as_captured(api):
    method, path, headers, _ = captured("auth-no-account.txt")
    assert "From" not in headers
    r = send(api, method, path, headers)
    assert r.status_code == 422
    expected = (CAPTURES / "auth-no-account.txt").read_text().split("\n\n")[2].split("\n")[0]
    assert r.json_body == json.loads(expected)
