"""The real Linphone SDK 5.1 against the real edge: accounts made through REST sign-up, then
REGISTER with digest, a list SUBSCRIBE of phone numbers and SIP URIs over UDP and TCP (deflate
on), refresh, and unsubscribe on close."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from chalice.test import Client

from testkit.wait import wait_until
from tests.accounts_support import basic, sign_up
from tests.edge.conftest import DOMAIN, EdgeThread
from tests.linphone.client import LinphoneClient

pytestmark = pytest.mark.linphone

PASSWORD = "linphone interop pass"
RLS = f"sip:rls@{DOMAIN}"
ALICE_PHONE = "+33611111111"
BOB_PHONE = "+33612345678"
NINA_PHONE = "+33698765432"  # signs up without a username: her username is the number
CAROL_PHONE = "+33655555555"  # given up after sign-up: carol is a SIP username only

# The subscriber's address book, spelled as a phone's would be: Bob in national form (the
# account's prefix 33 makes it +33612345678), non-users national and international.
FRIENDS: dict[str, str] = {
    "Bob": "0612345678",
    "Nina": NINA_PHONE,
    "Carol": f"sip:carol@{DOMAIN}",
    "Nobody": "+33600000002",
    "Nico": "0700000001",
    "Dave": f"sip:dave@{DOMAIN}",
}
USERS: dict[str, str] = {
    "0612345678": f"sip:bob@{DOMAIN}",
    NINA_PHONE: f"sip:{NINA_PHONE}@{DOMAIN}",
    f"sip:carol@{DOMAIN}": f"sip:carol@{DOMAIN}",
}
NON_USERS = ("+33600000002", "0700000001", f"sip:dave@{DOMAIN}")


@dataclass
class RecordingFunctions:
    """Wraps the edge's functions to keep every call: the digest the SDK answered with, and the
    lookups a refresh causes, are only visible there."""

    inner: Any
    calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)

    async def call(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        result = await self.inner.call(name, payload)
        self.calls.append((name, payload, result))
        return result

    def of(self, name: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        return [(p, r) for n, p, r in list(self.calls) if n == name]


@pytest.fixture
def accounts(api: Client) -> dict[str, dict[str, Any]]:
    """Accounts created as the apps create them: REST sign-up with the SMS code moto caught."""
    made = {
        "alice": sign_up(api, ALICE_PHONE, "alice", PASSWORD),
        "bob": sign_up(api, BOB_PHONE, "bob", PASSWORD),
        "nina": sign_up(api, NINA_PHONE, None, PASSWORD),
        "carol": sign_up(api, CAROL_PHONE, "carol", PASSWORD),
    }
    r = api.http.delete("/v1/accounts/me/phone", headers=basic("carol", PASSWORD))
    assert r.status_code == 204, r.body
    assert made["nina"]["username"] == NINA_PHONE
    return made


def start_edge(**overrides: object) -> tuple[EdgeThread, RecordingFunctions]:
    edge = EdgeThread(**overrides)
    recorder = RecordingFunctions(edge.edge.functions)
    edge.edge.functions = recorder
    return edge, recorder


@pytest.fixture
def edge(accounts: dict[str, dict[str, Any]]) -> Iterator[tuple[EdgeThread, RecordingFunctions]]:
    running, recorder = start_edge()
    yield running, recorder
    running.stop()


def register_and_subscribe(
    client: LinphoneClient, edge: EdgeThread, transport: str
) -> dict[str, Any]:
    """Register alice through the edge, subscribe FRIENDS; the first presence_received."""
    port = edge.address[1]
    mark = client.mark()
    client.account(
        f"sip:alice@{DOMAIN}", PASSWORD, f"sip:127.0.0.1:{port};transport={transport}", prefix="33"
    )
    client.wait_registration("Ok", after=mark)
    for name, item in FRIENDS.items():
        client.add_friend(name, item)
    client.subscribe(RLS)
    client.wait_subscription("Active", after=mark)
    return client.wait_presence_received(after=mark)


def assert_users_resolved(client: LinphoneClient) -> None:
    for key, contact in USERS.items():
        assert client.presence(key) == ("open", contact), key
    for key in NON_USERS:
        assert client.presence(key) == ("none", None), key


def assert_digest_answered(
    client: LinphoneClient, recorder: RecordingFunctions, method: str
) -> None:
    """The SDK answered the edge's 401 (SHA-256 and MD5 offered) and the digest checked out."""
    # The challenge itself never reaches the functions: the SDK's log of the wire shows it.
    assert "SIP/2.0 401 Unauthorized" in client.sdk_log_path.read_text(errors="replace")
    answers = [(p["params"], r) for p, r in recorder.of("sip_auth") if p["method"] == method]
    assert answers, f"no authenticated {method}"
    params, result = answers[0]
    assert params.get("algorithm", "MD5").upper() in ("SHA-256", "MD5")
    assert params["username"] == "alice" and params["realm"] == DOMAIN
    assert result["result"] == "ok" and result["aor"] == f"alice@{DOMAIN}"


def close_leaves_no_dialog(
    client: LinphoneClient, edge: EdgeThread, recorder: RecordingFunctions
) -> None:
    """A clean quit un-SUBSCRIBEs and un-REGISTERs: the edge ends the dialog at once rather
    than at its expiry, and the registrar drops the binding."""
    assert edge.edge.subscriptions.dialogs
    assert client.close(clean=True) == 0
    dialogs = edge.edge.subscriptions.dialogs
    assert wait_until(lambda: not dialogs, 5), dialogs
    assert any(e["event"] == "registration" and e["state"] == "Cleared" for e in client.events)
    removals = [r for p, r in recorder.of("sip_registrar") if p.get("expires_header") == 0]
    assert removals and removals[-1]["bindings"] == []


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_users_resolve_to_their_sip_address(linphone_client_factory, edge, transport):
    running, recorder = edge
    client: LinphoneClient = linphone_client_factory()
    received = register_and_subscribe(client, running, transport)

    assert_digest_answered(client, recorder, "REGISTER")
    assert_digest_answered(client, recorder, "SUBSCRIBE")
    (dialog,) = running.edge.subscriptions.dialogs.values()
    assert dialog.peer.transport == transport
    assert dialog.profile == "linphone"  # no User-Agent set: the SDK sends "Unknown"
    assert dialog.accept_deflate and dialog.is_list
    assert dialog.entries == sorted(
        [
            f"sip:+33600000002@{DOMAIN};user=phone",
            f"sip:+33612345678@{DOMAIN};user=phone",
            f"sip:+33698765432@{DOMAIN};user=phone",
            f"sip:+33700000001@{DOMAIN};user=phone",
            f"sip:carol@{DOMAIN}",
            f"sip:dave@{DOMAIN}",
        ]
    )
    assert {f["name"] for f in received["friends"]} == {"Bob", "Nina", "Carol"}
    assert_users_resolved(client)
    close_leaves_no_dialog(client, running, recorder)


@pytest.fixture
def short_edge(
    accounts: dict[str, dict[str, Any]],
) -> Iterator[tuple[EdgeThread, RecordingFunctions]]:
    """An edge granting 4 s subscriptions, so the SDK refreshes within the test (at ~90%).

    Nonces live 2 s so that, as in production (refreshes every ~54 min, nonces 5 min), each
    refresh finds its nonce expired. With a nonce still valid, the SDK's new SUBSCRIBE after a
    481 replays the old Authorization header verbatim; accepted, the SDK then has no
    credentials for the new dialog and its refresh and un-SUBSCRIBE go out unauthenticated."""
    running, recorder = start_edge(subscribe_min_expires=1, nonce_ttl_seconds=2)
    yield running, recorder
    running.stop()


SHORT_SUBSCRIPTION = {"sip.rls_presence_expires": 4}


def test_app_user_agent_and_refresh_keep_the_list(linphone_client_factory, short_edge):
    """As Linphone Android 4.6 names itself. The refresh carries no body: the edge must NOTIFY
    the dialog's list again, or the phone's full-state handling wipes every contact."""
    running, recorder = short_edge
    client: LinphoneClient = linphone_client_factory(SHORT_SUBSCRIPTION)
    client.set_user_agent("LinphoneAndroid", "4.6.14")
    register_and_subscribe(client, running, "udp")
    (dialog,) = running.edge.subscriptions.dialogs.values()
    assert dialog.profile == "linphone"
    assert_users_resolved(client)

    first_cseq = dialog.remote_cseq
    lookups = len(recorder.of("presence_lookup"))
    mark = client.mark()
    assert wait_until(lambda: len(recorder.of("presence_lookup")) > lookups, 10)
    # An in-dialog refresh (higher CSeq, no body) re-notified the list the dialog kept.
    refresh, result = recorder.of("presence_lookup")[lookups]
    assert "list_b64" not in refresh and not result.get("error")
    assert refresh["entries"] == dialog.entries and dialog.remote_cseq > first_cseq
    client.wait_presence_received(after=mark)
    assert running.edge.subscriptions.dialogs == {dialog.subscription_id: dialog}
    # The refresh reused the first nonce, expired by then, and was taken without a challenge.
    subscribes = [p["params"] for p, _ in recorder.of("sip_auth") if p["method"] == "SUBSCRIBE"]
    assert subscribes[1]["nonce"] == subscribes[0]["nonce"] and subscribes[1]["nc"] == "00000002"
    assert_users_resolved(client)
    close_leaves_no_dialog(client, running, recorder)


def test_refresh_of_a_lost_dialog_gets_481_and_the_sdk_subscribes_again(
    linphone_client_factory, short_edge
):
    """An edge that lost its dialogs (a restart) answers the refresh 481; the SDK then sends
    a new list SUBSCRIBE with its whole list, and the phone's contacts come back."""
    running, recorder = short_edge
    client: LinphoneClient = linphone_client_factory(SHORT_SUBSCRIPTION)
    register_and_subscribe(client, running, "udp")
    (lost,) = running.edge.subscriptions.dialogs.values()

    async def forget() -> None:  # on the edge's loop, and done before we look again
        running.edge.subscriptions.dialogs.clear()

    running.call(forget())

    mark = client.mark()
    assert wait_until(lambda: bool(running.edge.subscriptions.dialogs), 10)
    (fresh,) = running.edge.subscriptions.dialogs.values()
    assert fresh.call_id != lost.call_id and fresh.entries == lost.entries
    client.wait_presence_received(after=mark)
    assert_users_resolved(client)
    close_leaves_no_dialog(client, running, recorder)
