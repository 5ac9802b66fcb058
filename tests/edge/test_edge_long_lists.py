"""A list too large for the edge to keep inline (EDGE_DIALOG_INLINE_ENTRIES_BYTES): the edge
holds its keys only, and still sends correct full-state NOTIFYs (refresh, a number that stops
being a user, after a restart) from the list the functions stored, over real sockets."""

from __future__ import annotations

import re

import pytest

from chalicelib import accounts
from testkit.notify_body import users_in
from testkit.sip_client import SipClient
from tests.edge.conftest import DOMAIN, PASSWORD, EdgeThread, make_account
from tests.edge.test_edge_subscribe import RLS, subscribe
from tests.edge.test_live_updates import Clock, deliver, rlmi_of
from tests.presence_core.test_dialog_entries import long_uris

NEWCOMER = f"sip:+33699999999@{DOMAIN};user=phone"
BOB = f"sip:+33612345678@{DOMAIN};user=phone"
ENTRIES = [*long_uris(40), BOB, NEWCOMER, f"sip:carol@{DOMAIN}"]
LINPHONE = [("User-Agent", "LinphoneSDK/5.1 (long list test)")]
# 40 random 100-character URIs deflate to ~3 KB: far past this limit, so keys only.
SMALL_INLINE = {"edge_dialog_inline_entries_bytes": 256, "notify_min_interval": 30.0}


def resources_in(notify) -> list[str]:
    return re.findall(r'<resource uri="([^"]+)"', rlmi_of(notify))


def fresh_notify(phone: SipClient, after):
    """The next NOTIFY that is not a UDP retransmission of `after` (a phone absorbs those)."""
    while (notify := phone.notify()) is not None:
        if notify.headers.get("CSeq") != after.headers.get("CSeq"):
            return notify
    return None


def refresh(phone: SipClient, to: str) -> int:
    headers = [("Event", "presence"), ("Expires", "600"), *LINPHONE]
    from_uri = f"sip:alice@{DOMAIN}"
    phone.request("SUBSCRIBE", RLS, from_uri=from_uri, to=to, headers=headers)
    challenge = phone.response("SUBSCRIBE")
    phone.authorized("SUBSCRIBE", RLS, challenge, username="alice", password=PASSWORD,
                     from_uri=from_uri, to=to, headers=headers)  # fmt: skip
    return phone.response("SUBSCRIBE").status


def assert_full_state(notify, users: dict[str, str]) -> None:
    assert notify is not None and 'fullState="true"' in rlmi_of(notify)
    assert resources_in(notify) == ENTRIES and users_in(notify) == users


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_keys_only_list_gets_full_state_on_refresh_and_after_a_queued_change(world, clock):
    edge = EdgeThread(**SMALL_INLINE)
    edge.edge.clock, edge.edge.pacing = clock, clock.pacing
    phone = SipClient(edge.address)
    try:
        ok = subscribe(phone, ENTRIES, extra=LINPHONE)
        assert ok.status == 200
        users = {BOB: f"sip:bob@{DOMAIN}", ENTRIES[-1]: f"sip:carol@{DOMAIN}"}
        first = phone.notify()
        assert_full_state(first, users)
        (dialog,) = edge.edge.subscriptions.dialogs.values()
        assert dialog.entries is None and len(dialog.entry_keys) == 8 * len(ENTRIES)
        world.pump()

        # A refresh carries no body: full state comes from the stored list.
        assert refresh(phone, ok.headers.get("To")) == 200
        refreshed = fresh_notify(phone, first)
        assert_full_state(refreshed, users)

        # A sign-up reaches the list through the queue, checked against the keys: partial.
        make_account("dan", "+33699999999")
        deliver(world, edge, clock)
        update = fresh_notify(phone, refreshed)
        assert update is not None and 'fullState="false"' in rlmi_of(update)
        assert users_in(update) == {NEWCOMER: f"sip:dan@{DOMAIN}"}

        # The number stops being a user: Linphone needs full state, read from the stored list.
        accounts.unlink_phone(f"dan@{DOMAIN}")
        deliver(world, edge, clock)
        assert_full_state(fresh_notify(phone, update), users)
    finally:
        phone.close()
        edge.stop()


def test_a_keys_only_list_survives_a_restart(world, clock):
    first = EdgeThread(**SMALL_INLINE)
    port = first.address[1]
    phone = SipClient(first.address)
    try:
        ok = subscribe(phone, ENTRIES, extra=LINPHONE)
        assert ok.status == 200 and phone.notify() is not None
        world.pump()
        first.has_the_answers()
        first.stop()

        second = EdgeThread(**SMALL_INLINE, sip_port=port)
        second.edge.clock, second.edge.pacing = clock, clock.pacing
        try:
            assert second.edge.stats["resumed"] == 1
            (dialog,) = second.edge.subscriptions.dialogs.values()
            assert dialog.entries is None and len(dialog.entry_keys) == 8 * len(ENTRIES)
            make_account("dan", "+33699999999")
            deliver(world, second, clock)
            update = phone.notify()
            assert update is not None and users_in(update) == {NEWCOMER: f"sip:dan@{DOMAIN}"}
            assert refresh(phone, ok.headers.get("To")) == 200
            assert_full_state(
                fresh_notify(phone, update),
                {BOB: f"sip:bob@{DOMAIN}", NEWCOMER: f"sip:dan@{DOMAIN}",
                 ENTRIES[-1]: f"sip:carol@{DOMAIN}"},
            )  # fmt: skip
        finally:
            second.stop()
    finally:
        phone.close()


def test_a_large_list_that_could_not_be_stored_stays_whole_in_the_edge(world):
    """Past the inline limit, but its save failed: the edge holds the only copy, so it keeps
    the list deflated, and a refresh still gets full state."""
    from tests.faults.botofaults import Faults

    edge = EdgeThread(**SMALL_INLINE)
    phone = SipClient(edge.address)
    faults = Faults()
    users = {BOB: f"sip:bob@{DOMAIN}", ENTRIES[-1]: f"sip:carol@{DOMAIN}"}
    try:
        faults.set("dynamodb", "refuse", operations=["BatchWriteItem"])
        ok = subscribe(phone, ENTRIES, extra=LINPHONE)
        assert ok.status == 200
        first = phone.notify()
        assert_full_state(first, users)
        faults.clear()
        (dialog,) = edge.edge.subscriptions.dialogs.values()
        assert dialog.entries == ENTRIES and not dialog.entry_keys
        assert refresh(phone, ok.headers.get("To")) == 200
        assert_full_state(fresh_notify(phone, first), users)
    finally:
        faults.clear()
        phone.close()
        edge.stop()
