"""Password-guessing limits over REST: per account+address, per address, per account
with known addresses let through; unknown usernames answered exactly like known ones.

Chalice's test client always comes from 127.0.0.1; it is made a trusted proxy here, so each
request's client address is its X-Forwarded-For, which also checks the trusted-proxy rule."""

from __future__ import annotations

import pytest

from chalicelib import accounts
from tests.accounts_support import basic, challenges, digest_header
from tests.conftest import advance_clock, reset_caches

ME = "/v1/accounts/me"
GOOD = "correct horse battery"


@pytest.fixture
def alice(monkeypatch: pytest.MonkeyPatch, api):
    monkeypatch.setenv("HTTP_TRUSTED_PROXIES", "127.0.0.1")
    reset_caches()
    return accounts.create("alice", accounts.credentials_from_password("alice", GOOD))


def get_me(api, username: str, password: str, address: str):
    headers = {**basic(username, password), "X-Forwarded-For": f"198.51.100.7, {address}"}
    return api.http.get(ME, headers=headers)


def shape(response) -> tuple[int, list[str], str | None, dict | None]:
    """What an attacker sees, minus per-request values (fresh nonces)."""
    body = response.json_body
    return (
        response.status_code,
        sorted(k.lower() for k in response.headers if k.lower() not in {"content-length"}),
        response.headers.get("Retry-After"),
        body,
    )


def test_the_eleventh_try_from_one_address_is_refused_unchecked(alice, api):
    for _ in range(10):
        assert get_me(api, "alice", "wrong", "203.0.113.1").status_code == 401
    refused = get_me(api, "alice", GOOD, "203.0.113.1")  # right password, not even checked
    assert refused.status_code == 429
    assert refused.json_body["error"]["code"] == "auth_blocked"
    assert 890 <= int(refused.headers["Retry-After"]) <= 900
    # Another address is not concerned; the window's end lifts the block.
    assert get_me(api, "alice", GOOD, "203.0.113.2").status_code == 200
    advance_clock(901)
    assert get_me(api, "alice", GOOD, "203.0.113.1").status_code == 200


def test_unknown_and_known_usernames_get_identical_answers(alice, api):
    seen = {}
    for name in ("alice", "nobody"):
        seen[name] = [shape(get_me(api, name, "wrong", "203.0.113.9")) for _ in range(12)]
        advance_clock(901)
    # Retry-After counts down in real time: equal to the second or so.
    for known, unknown in zip(seen["alice"], seen["nobody"], strict=True):
        assert known[:2] + known[3:] == unknown[:2] + unknown[3:]
        assert abs(int(known[2] or 0) - int(unknown[2] or 0)) <= 2
    assert [s[0] for s in seen["alice"]] == [401] * 10 + [429] * 2


def test_digest_is_limited_too(alice, api):
    challenge = challenges(api.http.get(ME, headers={"X-Forwarded-For": "203.0.113.3"}))[0]
    for _ in range(10):
        h = digest_header(challenge, "alice", "wrong", "GET", ME)
        r = api.http.get(ME, headers={**h, "X-Forwarded-For": "203.0.113.3"})
        assert r.status_code == 401
    h = digest_header(challenge, "alice", GOOD, "GET", ME)
    r = api.http.get(ME, headers={**h, "X-Forwarded-For": "203.0.113.3"})
    assert r.status_code == 429 and r.headers["Retry-After"]


def test_one_address_across_many_accounts_is_blocked(alice, api):
    for i in range(50):  # 50 usernames, one try each: credential stuffing
        assert get_me(api, f"user{i}", "wrong", "203.0.113.4").status_code == 401
    assert get_me(api, "alice", GOOD, "203.0.113.4").status_code == 429
    assert get_me(api, "alice", GOOD, "203.0.113.5").status_code == 200


def test_the_owner_keeps_getting_in_while_the_account_is_under_attack(alice, api):
    assert get_me(api, "alice", GOOD, "192.0.2.10").status_code == 200  # the owner, before
    for i in range(200):  # from 200 addresses: no pair or address limit reached
        assert get_me(api, "alice", "wrong", f"10.0.{i // 250}.{i % 250}").status_code in (
            401,
            429,
        )
    assert get_me(api, "alice", GOOD, "192.0.2.10").status_code == 200
    new = get_me(api, "alice", GOOD, "192.0.2.99")
    assert new.status_code == 429 and int(new.headers["Retry-After"]) > 80000
    # The same for a username that does not exist: nothing tells them apart.
    for i in range(200):
        get_me(api, "nobody", "wrong", f"10.1.{i // 250}.{i % 250}")
    unknown = shape(get_me(api, "nobody", GOOD, "192.0.2.99"))
    assert unknown[:2] + unknown[3:] == shape(new)[:2] + shape(new)[3:]
    assert abs(int(unknown[2]) - int(new.headers["Retry-After"])) <= 5


def test_without_a_trusted_proxy_the_forwarded_header_is_ignored(aws, api):
    accounts.create("alice", accounts.credentials_from_password("alice", GOOD))
    for i in range(10):  # a client forging X-Forwarded-For gains nothing
        assert get_me(api, "alice", "wrong", f"203.0.113.{i}").status_code == 401
    assert get_me(api, "alice", GOOD, "203.0.113.200").status_code == 429


def test_xmlrpc_ha1_checks_are_limited_too(alice, api):
    from tests.xmlrpc_support import call, ha1

    def link(key: str):
        return call(api, "activate_phone_number_link", "+33612345678", "alice", "1234", key,
                    "example.org", "SHA-256")  # fmt: skip

    for _ in range(10):
        assert link(ha1("SHA-256", "alice", "guess")).string == "ERROR_PASSWORD_DOESNT_MATCH"
    # Right HA1, not checked: the assistant has no word for "wait", so a generic failure.
    assert link(ha1("SHA-256", "alice", GOOD)).string == "ERROR_UNEXPECTED"


def test_a_digest_nonce_is_bound_to_the_address_it_was_given_to(alice, api):
    """An Authorization captured at one address, right password and all, is stale elsewhere."""
    here = {"X-Forwarded-For": "203.0.113.20"}
    challenge = challenges(api.http.get(ME, headers=here))[0]
    answer = digest_header(challenge, "alice", GOOD, "GET", ME)
    elsewhere = api.http.get(ME, headers={**answer, "X-Forwarded-For": "198.51.100.99"})
    assert elsewhere.status_code == 401
    assert any("stale=true" in c for c in challenges(elsewhere))
    assert api.http.get(ME, headers={**answer, **here}).status_code == 200
