"""The flows without HTTP, as the XML-RPC assistant API and the SIP edge call them: sign-up
and recovery from a client HA1, linking, and the SIP digest check on the accounts created."""

from __future__ import annotations

import pytest

from chalicelib import accounts, digest, settings
from chalicelib.accounts import linking, signup
from chalicelib.api import sip_auth
from chalicelib.errors import DomainError
from testkit.sms import last_code
from tests.accounts_support import PASSWORD, pass_interval
from tests.conftest import advance_clock

A = "+33612345678"
B = "+33698765432"


def test_signup_from_an_md5_ha1(aws):
    signup.request_code(A, username="alice", source_ip="192.0.2.1")
    ha1 = digest.ha1("MD5", "alice", "example.org", PASSWORD)
    result = signup.confirm(A, last_code(A), ha1=ha1, algorithm="MD5")
    assert result == signup.SignupResult("alice", "sip:alice@example.org", A, recovered=False)
    account = accounts.get("alice@example.org")
    assert account.ha1s() == {"MD5": ha1}
    # A retry with the same HA1 answers the same; with another one it is refused.
    assert signup.confirm(A, last_code(A), ha1=ha1, algorithm="MD5") == result
    with pytest.raises(DomainError) as e:
        signup.confirm(A, last_code(A), ha1="0" * 32, algorithm="MD5")
    assert e.value.code == "conflict"


def test_recovery_from_a_sha256_ha1(aws):
    signup.request_code(A, source_ip="192.0.2.1")
    signup.confirm(A, last_code(A), password=PASSWORD)
    pass_interval()
    signup.request_code(A, source_ip="192.0.2.1")
    ha1 = digest.ha1("SHA-256", A, "example.org", "new password")
    result = signup.confirm(A, last_code(A), ha1=ha1, algorithm="SHA-256")
    assert result.recovered and result.http_status == 200
    assert accounts.get_by_username(A).ha1s() == {"SHA-256": ha1}


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"password": PASSWORD, "ha1": "0" * 32},
        {"ha1": "0" * 31},
        {"ha1": "0" * 32, "algorithm": "SHA-512"},
    ],
)
def test_credentials_are_checked_before_the_code_is_used(aws, kwargs):
    signup.request_code(A, source_ip="192.0.2.1")
    with pytest.raises(DomainError) as e:
        signup.confirm(A, last_code(A), **kwargs)
    assert e.value.code == "invalid_field"
    assert signup.confirm(A, last_code(A), password=PASSWORD).recovered is False


def test_linking_without_http(aws):
    alice = accounts.create("alice", accounts.credentials_from_password("alice", PASSWORD))
    assert (
        linking.request(alice, "06 12 34 56 78", default_region="FR", source_ip="x")
        == settings.get().code_ttl_seconds
    )
    linked = linking.confirm(alice, last_code(A))
    assert linked.phone == A
    with pytest.raises(DomainError) as e:
        linking.request(linked, A, source_ip="x")
    assert e.value.code == "phone_already_linked"
    assert linking.unlink(linked).phone is None


def test_a_deleted_accounts_link_code_does_not_serve_its_namesake(aws):
    alice = accounts.create("alice", accounts.credentials_from_password("alice", PASSWORD))
    linking.request(alice, A, source_ip="x")
    code = last_code(A)
    accounts.delete(alice.aor)
    advance_clock(2)
    again = accounts.create("alice", accounts.credentials_from_password("alice", "other pw!"))
    with pytest.raises(DomainError) as e:
        linking.confirm(again, code)
    # The old account's creation time is part of the code: a wrong answer, one try used.
    assert e.value.code == "code_mismatch"


def test_sip_digest_checks_the_accounts_signup_created(aws):
    signup.request_code(A, username="alice", source_ip="192.0.2.1")
    signup.confirm(A, last_code(A), password=PASSWORD)
    for algorithm in ("SHA-256", "MD5"):
        ha1 = digest.ha1(algorithm, "alice", "example.org", PASSWORD)
        params = {
            "username": "alice",
            "realm": "example.org",
            "nonce": "n",
            "uri": "sip:example.org",
            "algorithm": algorithm,
            "qop": "auth",  # required: without a count a replay could not be told
            "nc": "00000001",
            "cnonce": "c",
            "response": digest.expected_response(
                algorithm, ha1, "REGISTER", "sip:example.org", "n",
                qop="auth", nc="00000001", cnonce="c",
            ),
        }  # fmt: skip
        assert sip_auth.verify("REGISTER", "example.org", params)["result"] == "ok"
