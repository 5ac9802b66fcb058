"""The real Linphone SDK 5.1 `LinphoneAccountCreator` against our XML-RPC assistant: the
Chalice app served over HTTP (chalice local, on moto), the SDK driven through lpclient.
Create → activate → REGISTER at the SIP edge; link → activate link; recovery by number with
new credentials. None of the unauthenticated calls tells the SDK anything about an account."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from chalicelib import accounts
from devstack.rest_thread import RestThread
from testkit.ports import free_port
from testkit.sms import last_code
from tests.accounts_support import pass_interval
from tests.edge.conftest import EdgeThread
from tests.linphone.client import LinphoneClient
from tests.test_xmlrpc_api import register

NOT_AN_ACCOUNT = "ERROR_ACCOUNT_DOESNT_EXIST"

pytestmark = pytest.mark.linphone

DOMAIN = "example.org"
PASSWORD = "linphone secret"


def sha256_ha1(username: str, password: str = PASSWORD) -> str:
    return hashlib.sha256(f"{username}:{DOMAIN}:{password}".encode()).hexdigest()


@pytest.fixture
def xmlrpc_url(aws: None) -> Iterator[str]:
    """The app over real HTTP (chalice local, threaded) on a free loopback port."""
    with RestThread("127.0.0.1", free_port(), name="xmlrpc-http") as rest:
        yield f"{rest.url}/wizard.php"


@pytest.fixture
def edge(xmlrpc_url: str) -> Iterator[EdgeThread]:
    running = EdgeThread()
    yield running
    running.stop()


def creator(lp: LinphoneClient, url: str, **fields: str | tuple[str, str]) -> None:
    lp.account_creator(url, domain=DOMAIN, algorithm="SHA-256", language="fr", **fields)


def test_create_activate_then_register_at_the_edge(linphone_client_factory, xmlrpc_url, edge):
    lp: LinphoneClient = linphone_client_factory()
    creator(lp, xmlrpc_url, username="kate", password=PASSWORD, phone=("612345678", "33"))
    used = lp.creator_request("is_alias_used")
    assert (used["status"], used["phone"]) == ("AliasNotExist", "+33612345678")

    created = lp.creator_request("create_account")
    assert (created["status"], created["response"]) == ("AccountCreated", "OK")
    code = last_code("+33612345678")

    lp.creator_set(code=f"{(int(code) + 1) % 10000:04d}")
    assert lp.creator_request("activate_account")["status"] == "WrongActivationCode"
    lp.creator_set(code=code)
    activated = lp.creator_request("activate_account")
    assert activated["status"] == "AccountActivated"
    assert activated["ha1"] == sha256_ha1("kate") == accounts.get_by_username("kate").ha1_sha256
    # The same request again: the code is gone, and no HA1 is given twice.
    again = lp.creator_request("activate_account")
    assert (again["status"], again["response"]) == (
        "WrongActivationCode",
        "ERROR_KEY_DOESNT_MATCH",
    )

    # Unauthenticated lookups tell nothing about the account, even to its own app.
    assert lp.creator_request("is_account_activated")["status"] == "AccountActivated"
    assert lp.creator_request("is_alias_used")["status"] == "AliasNotExist"
    linked = lp.creator_request("is_account_linked")
    assert (linked["status"], linked["response"]) == ("AccountNotLinked", NOT_AN_ACCOUNT)

    mark = lp.mark()
    lp.account(f"sip:kate@{DOMAIN}", PASSWORD, f"sip:127.0.0.1:{edge.address[1]};transport=udp")
    lp.wait_registration("Ok", after=mark)


def test_create_refusals_reach_the_sdk_as_its_statuses(linphone_client_factory, xmlrpc_url):
    accounts.create("taken", accounts.credentials_from_password("taken", PASSWORD))
    lp: LinphoneClient = linphone_client_factory()
    creator(lp, xmlrpc_url, username="taken", password=PASSWORD, phone=("612345678", "33"))
    # A taken username is told only to whoever proves the number, at activation.
    assert lp.creator_request("create_account")["status"] == "AccountCreated"
    lp.creator_set(code=last_code("+33612345678"))
    refused = lp.creator_request("activate_account")
    assert (refused["status"], refused["response"]) == (
        "AccountNotActivated",
        "ERROR_ACCOUNT_ALREADY_IN_USE",
    )
    pass_interval()  # the per-number SMS interval
    lp.creator_set(username="kate")
    assert lp.creator_request("create_account")["status"] == "AccountCreated"
    # A second SMS to the number within the interval: the SDK's "overused".
    assert lp.creator_request("create_account")["status"] == "PhoneNumberOverused"
    lp.creator_set(domain="sip.linphone.org")
    assert lp.creator_request("create_account")["response"] == "ERROR_DOMAIN_NOT_ALLOWED"


def test_link_then_activate_link(linphone_client_factory, xmlrpc_url):
    accounts.create("liam", accounts.credentials_from_password("liam", PASSWORD))
    lp: LinphoneClient = linphone_client_factory()
    creator(lp, xmlrpc_url, username="liam", password=PASSWORD, phone=("622222222", "33"))
    assert lp.creator_request("is_account_linked")["status"] == "AccountNotLinked"

    requested = lp.creator_request("link_account")
    assert (requested["status"], requested["response"]) == ("RequestOk", "OK")
    lp.creator_set(code=last_code("+33622222222"))
    done = lp.creator_request("activate_alias")
    assert (done["status"], done["response"]) == ("AccountActivated", "OK")

    assert accounts.get_by_username("liam").phone == "+33622222222"


def test_link_with_a_wrong_password_is_not_linked(linphone_client_factory, xmlrpc_url):
    accounts.create("liam", accounts.credentials_from_password("liam", PASSWORD))
    lp: LinphoneClient = linphone_client_factory()
    creator(lp, xmlrpc_url, username="liam", password="not it", phone=("622222222", "33"))
    assert lp.creator_request("link_account")["status"] == "RequestOk"
    lp.creator_set(code=last_code("+33622222222"))
    assert lp.creator_request("activate_alias")["status"] == "AccountNotActivated"
    assert accounts.get_by_username("liam").phone is None


def test_recover_by_number_gives_the_sdk_new_credentials(linphone_client_factory, xmlrpc_url, edge):
    # The account as the 5.1 assistant makes it when the app sets no username: the number.
    number = "+33633333333"
    accounts.create(number, accounts.credentials_from_password(number, PASSWORD), phone_e164=number)
    lp: LinphoneClient = linphone_client_factory()
    creator(lp, xmlrpc_url, phone=("633333333", "33"))
    recovered = lp.creator_request("recover_account")
    # The number comes back as the username: the same answer for every number, taken or free.
    assert (recovered["status"], recovered["username"]) == ("RequestOk", number)
    lp.creator_set(code=last_code(number))
    login = lp.creator_request("login_linphone_account")
    assert login["status"] == "RequestOk"
    account = accounts.get_by_username(number)
    # New credentials, never the existing HA1; the old password is dead.
    assert (login["ha1"], login["algorithm"]) == (account.ha1_sha256, "SHA-256")
    assert login["ha1"] != sha256_ha1(number)
    assert register(edge, number, ha1_hex=login["ha1"], algorithm="SHA-256") == 200
    assert register(edge, number, password=PASSWORD, algorithm="SHA-256") == 401
