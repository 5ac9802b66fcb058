"""A burst of dialogs to bring up to date at once (here: 200 full states owed after a reload)
goes EDGE_NOTIFY_CONCURRENCY dialogs at a time: every phone gets its NOTIFY, no lookup is
refused by the edge's own bulkhead, every result is recorded, and a phone subscribing in the
middle of it is served."""

from __future__ import annotations

import threading

from chalicelib import clock as chalice_clock
from chalicelib.live import subscriptions
from sip_edge.dialog import Peer, SubscriptionDialog
from testkit.notify_body import users_in
from testkit.sip_client import SipClient
from testkit.wait import wait_until
from tests.edge.conftest import DOMAIN, EdgeThread
from tests.edge.test_edge_subscribe import ENTRIES, subscribe

EDGE_ID = "edge-burst"
DIALOGS = 200


def store_unsynced(count: int, phone: SipClient) -> None:
    """`count` list dialogs of this edge, stored as a new SUBSCRIBE stores them (before the
    phone could answer its first NOTIFY), carol's, their NOTIFYs going to `phone`."""
    expires = chalice_clock.now_int() + 3600
    peer = Peer("udp", phone.host, phone.port)
    for i in range(count):
        dialog = SubscriptionDialog(
            subscription_id=f"sub-{i}", call_id=f"call-{i}", local_tag=f"lt{i}", remote_tag="rt",
            local_uri="<sip:rls@example.org>", remote_uri=f"<sip:carol@{DOMAIN}>",
            remote_target=f"sip:carol@{phone.host}:{phone.port}", route_set=[],
            subscriber=f"carol@{DOMAIN}", peer=peer, expires_at=expires, version=1,
        )  # fmt: skip
        subscriptions.save(
            dialog.subscription_id, edge_id=EDGE_ID, subscriber=dialog.subscriber,
            expires_at=expires, version=1, dialog=dialog.to_record(), entries=ENTRIES, watched=[],
        )  # fmt: skip


def test_owed_full_states_go_a_few_dialogs_at_a_time_and_leave_room_for_phones(world):
    phones = SipClient(("127.0.0.1", 9))  # the peer of every stored dialog
    store_unsynced(DIALOGS, phones)
    edge = EdgeThread(edge_id=EDGE_ID, notify_min_interval=0.0)
    phones.server = edge.address
    functions = edge.edge.functions
    lookups, peak, lock = [0], [0], threading.Lock()
    call = functions.call

    async def counting(name, payload):
        counted = name == "presence_lookup" and payload.get("full_state") is True  # owed ones
        if counted:
            with lock:
                lookups[0] += 1
                peak[0] = max(peak[0], lookups[0])
        try:
            return await call(name, payload)
        finally:
            if counted:
                with lock:
                    lookups[0] -= 1

    functions.call = counting
    newcomer = SipClient(edge.address)
    try:
        subscribed: list[int] = []
        meanwhile = threading.Thread(
            target=lambda: subscribed.append(subscribe(newcomer, ENTRIES).status)
        )
        meanwhile.start()
        seen: dict[str, object] = {}
        while len(seen) < DIALOGS:
            notify = phones.notify(timeout=15)
            assert notify is not None, f"{len(seen)} of {DIALOGS} phones got their full state"
            seen.setdefault(notify.call_id, notify)
        meanwhile.join(15)
        assert subscribed == [200], "a phone's SUBSCRIBE during the burst was not served"
        assert all('fullState="true"' in n.body.decode() for n in seen.values())
        assert all(users_in(n) for n in seen.values())
        assert 1 < peak[0] <= edge.edge.cfg.edge_notify_concurrency
        assert functions.guard.stats["overloaded"] == 0, "the edge refused its own lookups"

        def synced() -> int:
            return sum(s["dialog"]["synced"] for s in subscriptions.load_edge(EDGE_ID))

        assert wait_until(lambda: synced() >= DIALOGS, 10, interval=0.1)
        assert synced() == DIALOGS, "results not recorded"
    finally:
        functions.call = call
        edge.stop()
        phones.close()
        newcomer.close()
