"""The real Linphone SDK 5.1 joins through remote provisioning and its FlexiAPI assistant, on a
`make run`-style stack: the REST API over real HTTP (chalice local) on moto, moto's DynamoDB
streams replayed into the live-update handlers, and the real SIP edge on loopback.

A core started with only a provisioning URL comes up with the domain, the list URI and the
FlexiAPI assistant; after its restart (the backend is read at start) the app asks a token,
which arrives by push (read from moto's SNS), makes its account with it, links its number with
the SMS code, registers, subscribes its address book and sees which numbers are users; then it
changes its password (the old one no longer registers) and deletes its account (its list
subscription ends with a final NOTIFY). Once with a clear password (the SDK answers SHA-256
Digest, HTTP and SIP), once with an MD5 HA1 (MD5 Digest).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from chalicelib import accounts
from devstack.rest_thread import RestThread
from devstack.streams import StreamReplayer
from testkit.ports import free_port
from testkit.sms import sent_sms
from tests.conftest import reset_caches
from tests.edge.conftest import DOMAIN, EdgeThread, make_account
from tests.flexiapi_support import FCM, create_push_applications, pushed_token, pushes
from tests.linphone.client import LinphoneClient
from tests.linphone.test_edge_linphone import wait_until

pytestmark = pytest.mark.linphone

PASSWORD = "kate's first password"
NEW_PASSWORD = "kate's second password"
KATE_PHONE = ("622222222", "33")
KATE_E164 = "+33622222222"
BOB_E164 = "+33612345678"


@dataclass
class Stack:
    rest: RestThread
    edge: EdgeThread
    sip_port: int

    @property
    def provisioning_url(self) -> str:
        return f"{self.rest.url}/provisioning"


@pytest.fixture
def stack(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """What `make run` runs, on free ports: the edge's TCP port is what provisioning hands out."""
    create_push_applications(monkeypatch)
    port = free_port()
    monkeypatch.setenv("SIP_PROXY_URI", f"sip:127.0.0.1:{port};transport=tcp")
    reset_caches()
    edge = EdgeThread(sip_port=port, notify_min_interval=0.2)
    stop_replayer = StreamReplayer().start()
    rest = RestThread("127.0.0.1", free_port(), name="flexiapi-http")
    yield Stack(rest, edge, port)
    rest.stop()
    stop_replayer()
    edge.stop()


def code_sent_to(e164: str, timeout: float = 10.0) -> str:
    assert wait_until(lambda: any(n == e164 for n, _ in sent_sms()), timeout), "no SMS"
    text = [t for n, t in sent_sms() if n == e164][-1]
    return text.rsplit(" ", 1)[-1]


def ha1(algorithm: str, username: str, password: str) -> str:
    name = "md5" if algorithm == "MD5" else "sha256"
    return hashlib.new(name, f"{username}:{DOMAIN}:{password}".encode()).hexdigest()


def use_credentials(lp: LinphoneClient, algorithm: str, password: str) -> None:
    """The app's credentials: a clear password (the SDK then answers the first challenge,
    SHA-256), or only an MD5 HA1 (it answers MD5)."""
    if algorithm == "SHA-256":
        lp.auth("kate", DOMAIN, password=password)
    else:
        lp.auth("kate", DOMAIN, ha1=ha1("MD5", "kate", password), algorithm="MD5")


def provisioned(lp: LinphoneClient, section: str, key: str) -> Any:
    return lp.config_get(section, key)


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_linphone_51_joins_with_provisioning_and_flexiapi(
    stack: Stack, linphone_client_factory: Any, algorithm: str
) -> None:
    make_account("bob", BOB_E164)
    lp: LinphoneClient = linphone_client_factory({"misc.config-uri": stack.provisioning_url})

    # 1. Only a provisioning URL: the domain, the list URI and the assistant come from it.
    assert lp.wait_configuring()["status"] == "Successful"
    assert provisioned(lp, "sip", "rls_uri") == f"sip:rls@{DOMAIN}"
    assert provisioned(lp, "assistant", "domain") == DOMAIN
    assert provisioned(lp, "account_creator", "backend") == "1"
    assert provisioned(lp, "account_creator", "url") == f"{stack.rest.url}/api/"
    proxy = f"<sip:127.0.0.1:{stack.sip_port};transport=tcp>"
    assert provisioned(lp, "proxy_default_values", "reg_proxy") == proxy
    assert provisioned(lp, "proxy_default_values", "realm") == DOMAIN
    # The SDK reads its assistant backend at start: the app restarts the core, as Linphone's
    # apps do after provisioning (the anonymous link stays: it is fetched again).
    assert lp.restart()["status"] == "Successful"

    # 2. The app asks a creation token with its push parameters; it arrives by push.
    lp.command("creator", "-")  # the FlexiAPI backend uses [account_creator] url
    lp.creator_set(pn_provider=FCM["pn_provider"], pn_param=FCM["pn_param"], pn_prid=FCM["pn_prid"])
    sent = lp.creator_request("login_linphone_account", callback="send_token")
    assert sent["status"] == "RequestOk", sent
    token = pushed_token(FCM["pn_prid"])

    # 3. Is the name free? Without an account the app names none: 404, as for any name.
    lp.creator_set(username="kate", password=PASSWORD)
    assert lp.creator_request("is_account_exist")["status"] == "AccountNotExist"
    lp.creator_set(token=token)
    created = lp.creator_request("create_with_token", callback="create_account")
    assert created["status"] == "RequestOk", created
    kate = accounts.get_by_username("kate")
    assert kate is not None and not kate.activated and kate.phone is None
    # The provisioned assistant gave the domain and the algorithm; the account goes into the
    # core from the provisioned server address, held back until the number is proven.
    lp.creator_create_account()
    lp.account_register(False)
    lp.account_prefix("33")
    use_credentials(lp, algorithm, PASSWORD)

    # 4. The number, proven by its SMS code (Digest with the account's From).
    lp.creator_set(phone=KATE_PHONE)
    lp.creator_send("link_account")  # 5.1 reports RequestFailed, yet sends it
    code = code_sent_to(KATE_E164)
    lp.creator_set(code=code)
    # The code goes back as activate_alias does (accounts/me/phone), or as 5.1's
    # activate_account does (accounts/{sip}/activate/email, answered for the account itself).
    lp.creator_send("activate_alias" if algorithm == "SHA-256" else "activate_account")
    assert wait_until(lambda: (accounts.get_by_username("kate") or kate).activated, 10)
    assert accounts.get_by_username("kate").phone == KATE_E164
    # is_account_linked (GET accounts/me) reports only a failure: none comes.
    mark = lp.mark()
    lp.creator_send("is_account_linked")
    lp.iterate(1500)
    assert not [e for e in lp.events[mark:] if e.get("op") == "is_account_linked"
                and e["event"] == "creator"]  # fmt: skip
    # Its own account, signed in, is told the truth.
    activated = lp.creator_request("is_account_activated", callback="activate_account")
    assert activated["status"] == "AccountActivated", activated

    # 5. It registers, subscribes its address book through the provisioned list URI and sees
    # which numbers are users.
    mark = lp.mark()
    lp.account_register(True)
    lp.wait_registration("Ok", after=mark, timeout=15)
    lp.add_friend("Bob", "0612345678")
    lp.add_friend("Nobody", "0698765432")
    lp.subscribe("-")
    lp.wait_presence_received(after=mark, timeout=15)
    assert lp.presence("0612345678") == ("open", f"sip:bob@{DOMAIN}")
    assert lp.presence("0698765432")[1] is None

    # 6. A new password (update_account; 5.1 swaps the two fields): what was signed in with
    # the old one ends (a final NOTIFY), and the old one no longer registers.
    mark = lp.mark()
    lp.creator_set(password=PASSWORD, new_password=NEW_PASSWORD)
    lp.creator_send("update_account")
    assert wait_until(
        lambda: accounts.check_password(accounts.get_by_username("kate"), NEW_PASSWORD), 10
    )
    lp.wait_subscription("Terminated", after=mark, timeout=15)
    mark = lp.mark()
    lp.refresh_register()
    lp.wait_registration("Failed", after=mark, timeout=15)
    use_credentials(lp, algorithm, NEW_PASSWORD)
    mark = lp.mark()
    lp.refresh_register()
    lp.wait_registration("Ok", after=mark, timeout=15)
    lp.unsubscribe()  # the app turns the list's subscription off and on (as Android 6 does)
    lp.subscribe("-")
    lp.wait_subscription("Active", after=mark, timeout=15)

    # 7. The account deleted: its subscription ends with a final NOTIFY.
    mark = lp.mark()
    lp.creator_set(password=NEW_PASSWORD)
    deleted = lp.creator_request("delete_account")
    assert deleted["status"] == "RequestOk", deleted
    assert accounts.get_by_username("kate") is None
    lp.wait_subscription("Terminated", after=mark, timeout=15)
    assert len([p for p in pushes() if p]) == 1
