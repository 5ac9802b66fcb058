"""An account's provisioning link with the real Linphone SDK 5.1: a fresh core started with only
the link gets the account (its HA1 and algorithm, never a password), registers at once through
the provisioned address and transport, subscribes its address book to the provisioned list URI,
and forgets the used link; the link serves no one else."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from chalicelib import accounts, settings
from chalicelib.accounts import provisioning
from tests.conftest import advance_clock
from tests.edge.conftest import DOMAIN, make_account
from tests.linphone.client import LinphoneClient
from tests.linphone.test_flexiapi_linphone import Stack, stack  # noqa: F401  (the fixture)

pytestmark = pytest.mark.linphone
PASSWORD = "kate's password"


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_an_account_link_configures_a_phone_that_registers(
    stack: Stack,  # noqa: F811
    linphone_client_factory: Any,
    algorithm: str,
) -> None:
    make_account("bob", "+33612345678")
    if algorithm == "SHA-256":
        credentials = accounts.credentials_from_password("kate", PASSWORD)
    else:  # an account imported from an MD5 HA1 alone
        md5 = hashlib.md5(f"kate:{DOMAIN}:{PASSWORD}".encode()).hexdigest()
        credentials = accounts.credentials_from_ha1(md5, "MD5")
    kate = accounts.create("kate", credentials, phone_e164="+33622222222")
    link = provisioning.issue_link(kate, stack.rest.url)

    lp: LinphoneClient = linphone_client_factory({"misc.config-uri": link.url})
    mark = 0
    assert lp.wait_configuring()["status"] == "Successful"
    assert lp.config_get("auth_info_0", "algorithm") == algorithm
    assert lp.config_get("auth_info_0", "ha1") == kate.ha1s()[algorithm]
    assert lp.config_get("auth_info_0", "passwd") is None
    # Used once: the app forgets the link (no dead fetch at each start).
    assert lp.config_get("misc", "config-uri") is None
    lp.wait_registration("Ok", after=mark, timeout=15)
    lp.add_friend("Bob", "0612345678")
    lp.subscribe("-")
    lp.wait_presence_received(timeout=15)
    assert lp.presence("0612345678") == ("open", f"sip:bob@{DOMAIN}")

    # Another phone with the same link gets nothing (once the window for a lost answer, open
    # to the same address and User-Agent only, has passed: on loopback both phones share them).
    advance_clock(settings.get().provisioning_retry_seconds + 1)
    other: LinphoneClient = linphone_client_factory({"misc.config-uri": link.url})
    answer = other.wait_configuring()
    assert (answer["status"], answer["message"]) == ("Failed", "http error")
    assert other.config_get("proxy_0", "reg_identity") is None
