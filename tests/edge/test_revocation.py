"""Revocation that bites: disabling, deleting or recovering an account ends its SIP dialogs
(a final NOTIFY, Subscription-State: terminated) and its registrations through the
live-update path (stream -> revoke message on the edge's queue), within seconds; lookups and
the registrar refuse a disabled subscriber."""

from __future__ import annotations

import time

import pytest

from chalicelib import accounts
from chalicelib.api import presence_lookup
from chalicelib.live import registrar
from devstack.streams import StreamReplayer
from testkit.sip_client import SipClient
from testkit.wait import wait_until
from tests.edge.conftest import DOMAIN, EdgeThread, make_account
from tests.edge.test_edge_subscribe import subscribe

ENTRIES = [f"sip:+33612345678@{DOMAIN};user=phone", f"sip:carol@{DOMAIN}"]
ALICE = f"alice@{DOMAIN}"


@pytest.fixture
def live_edge(world):
    edge = EdgeThread()
    yield edge
    edge.stop()


def bind(aor: str) -> None:
    registrar.register(
        aor,
        [registrar.ContactRequest(uri="sip:alice@192.0.2.10:5060")],
        call_id="c1",
        cseq=1,
        expires_header=600,
    )


def final_notify(phone: SipClient, world: StreamReplayer, timeout: float = 5.0):
    """Replay the streams until the edge sends the dialog's terminating NOTIFY."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        world.pump()
        notify = phone.notify(timeout=0.3)
        if notify is not None:
            return notify
    return None


def subscribed(live_edge: EdgeThread, world: StreamReplayer) -> SipClient:
    phone = SipClient(live_edge.address)
    assert subscribe(phone, ENTRIES).status == 200
    assert phone.notify() is not None  # the full state
    world.pump()  # the subscriber's own setup records
    return phone


@pytest.mark.parametrize(
    ("revoke", "reason"),
    [
        (lambda: accounts.set_disabled(ALICE, True), "rejected"),
        (lambda: accounts.delete(ALICE), "rejected"),
        (
            lambda: accounts.update(
                ALICE,
                credentials=accounts.credentials_from_password("alice", "a new one!", DOMAIN),
                revoke=True,
            ),
            "deactivated",
        ),
    ],
    ids=["disabled", "deleted", "recovered"],
)
def test_revocation_ends_the_dialogs_and_bindings_within_seconds(live_edge, world, revoke, reason):
    phone = subscribed(live_edge, world)
    bind(ALICE)
    world.pump()
    assert registrar.bindings(ALICE)
    started = time.monotonic()
    revoke()
    notify = final_notify(phone, world)
    elapsed = time.monotonic() - started
    assert notify is not None, "no final NOTIFY after the revocation"
    assert notify.headers.get("Subscription-State") == f"terminated;reason={reason}"
    assert elapsed < 5
    assert not registrar.bindings(ALICE)
    # The edge forgets the dialog once the NOTIFY is answered.
    assert wait_until(lambda: not live_edge.edge.subscriptions.dialogs, 5)
    # Nothing more reaches that phone, whatever changes in its list.
    make_account("dan", "+33699999999")
    world.pump()
    assert phone.notify(timeout=1.0) is None


def test_a_recovery_keeps_the_sessions_made_after_it(live_edge, world):
    accounts.update(
        ALICE,
        credentials=accounts.credentials_from_password("alice", "correct horse battery", DOMAIN),
        revoke=True,
    )
    time.sleep(0.01)  # revocation instants are in ms: the new phone's session starts after
    phone = subscribed(live_edge, world)  # the new phone, signed in after the recovery
    bind(ALICE)
    world.pump()
    assert phone.notify(timeout=1.0) is None
    assert registrar.bindings(ALICE) and len(live_edge.edge.subscriptions.dialogs) == 1


def test_a_revoke_message_for_another_subscriber_changes_nothing(live_edge, world):
    subscribed(live_edge, world)
    (sub_id,) = live_edge.edge.subscriptions.dialogs
    message = {"kind": "revoke", "subscriber": f"bob@{DOMAIN}", "subscription_ids": [sub_id]}
    assert live_edge.edge.subscriptions.revoke(message) == 0
    assert sub_id in live_edge.edge.subscriptions.dialogs


def test_lookups_and_the_registrar_refuse_a_disabled_subscriber(world):
    accounts.set_disabled(ALICE, True)
    answer = presence_lookup.handle({"subscriber": ALICE, "entries": ENTRIES})
    assert answer["error"]["code"] == "account_disabled"
    refused = registrar.handle(
        {"op": "register", "aor": ALICE, "call_id": "c", "cseq": 1, "contacts": []}
    )
    assert refused["error"]["code"] == "account_disabled"
