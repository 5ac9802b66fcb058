"""A wall-clock step must not fire or stall SIP transaction timers: they run on a monotonic
clock, the wall clock only dates stored expiries, Date headers and PIDF timestamps."""

from __future__ import annotations

import time

from testkit.sip_client import SipClient
from tests.edge.test_edge_subscribe import ENTRIES, subscribe, users  # noqa: F401 (fixture)


def test_a_clock_step_does_not_time_out_a_notify_in_flight(edge, users):  # noqa: F811
    phone = SipClient(edge.address)
    assert subscribe(phone, ENTRIES).status == 200
    first = phone.notify(answer=None)  # left unanswered: its client transaction keeps running
    assert first is not None
    edge.edge.clock = lambda: time.time() + 100  # past Timer F (32 s), before expiry
    again = phone.notify(answer=200, timeout=5)  # Timer E retransmits the same NOTIFY
    assert again is not None, "the NOTIFY was abandoned when the wall clock jumped"
    assert again.headers.get("CSeq") == first.headers.get("CSeq")
    time.sleep(0.5)  # real time: the edge's timers get their chance to fire on the stepped clock
    assert len(edge.edge.subscriptions.dialogs) == 1, "Timer F fired on a wall-clock step"
    phone.close()
