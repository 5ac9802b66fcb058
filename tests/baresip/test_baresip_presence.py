"""Two real baresip 1.0 UAs against the local stack with default settings, over UDP and TCP:
they register and subscribe (per-contact presence, RFC 3856), accept every NOTIFY, see each
other online, then offline once one quits.

The stack is the local one, as `make run` starts it: moto, the stream replayer feeding the
live-update handlers, the edge's SQS queue and the real edge on loopback; only the SIP port is
picked free. Figures are bounds of a correct run (3 s, the product's promise), not benchmarks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from chalicelib import accounts, clock, settings
from chalicelib.live import registrar
from devstack.streams import StreamReplayer
from testkit.wait import seconds_until
from tests.baresip.client import Baresip
from tests.edge.conftest import DOMAIN, EdgeThread

pytestmark = pytest.mark.baresip

PASSWORD = "horse-battery-staple"  # baresip's accounts file ends a value at a space
WITHIN = 3.0  # seconds, each way


@pytest.fixture
def stack(aws: None) -> Iterator[EdgeThread]:
    for user in ("alice", "bob", "carol"):
        accounts.create(user, accounts.credentials_from_password(user, PASSWORD, DOMAIN))
    replayer = StreamReplayer()
    stop_replayer = replayer.start()
    edge = EdgeThread()  # default settings: digest, profiles, NOTIFY throttle
    yield edge
    edge.stop()
    stop_replayer()


def registered(user: str) -> bool:
    return bool(registrar.bindings(f"{user}@{DOMAIN}", clock.now()))


def shows(ua: Baresip, contact: str, status: str) -> bool:
    return ua.statuses().get(f"{contact}@{DOMAIN}") == status


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_two_baresip_see_each_other_online_then_offline(baresip_factory, stack, transport):
    cfg = settings.get()
    assert cfg.sip_digest_algorithms == ("SHA-256", "MD5") and cfg.sip_profile == "auto"
    edge = stack
    # Each also watches Carol, who never registers: a second dialog from the same device.
    common = dict(domain=DOMAIN, password=PASSWORD, edge=edge.address, transport=transport)
    alice = baresip_factory("alice", contacts=["bob", "carol"], **common)
    settled = seconds_until(lambda: registered("alice") and alice.statuses() == {
        f"bob@{DOMAIN}": "Offline", f"carol@{DOMAIN}": "Offline"}, 5)  # fmt: skip
    assert settled is not None, alice.trace()  # "a user, no status": not mutual contacts yet
    # Alice has been online a while when Bob starts: her dialogs' first NOTIFYs are older
    # than the NOTIFY throttle, which would otherwise hold Bob's news back (not measured here).
    # The edge's pacing clock moves past the throttle interval instead of the test sleeping it.
    ahead = cfg.notify_min_interval
    edge.edge.pacing = lambda: time.monotonic() + ahead

    bob = baresip_factory("bob", contacts=["alice", "carol"], **common)
    both_online = seconds_until(
        lambda: shows(alice, "bob", "Online") and shows(bob, "alice", "Online"), WITHIN
    )
    assert both_online is not None, (
        f"alice sees {alice.statuses()}, bob sees {bob.statuses()}\n{alice.trace()[-4000:]}"
    )
    assert registered("bob")
    mine = [d for d in edge.edge.subscriptions.dialogs.values() if d.peer.transport == transport]
    assert sorted((d.subscriber, d.entries[0]) for d in mine) == [
        (f"alice@{DOMAIN}", f"sip:bob@{DOMAIN}"),
        (f"alice@{DOMAIN}", f"sip:carol@{DOMAIN}"),
        (f"bob@{DOMAIN}", f"sip:alice@{DOMAIN}"),
        (f"bob@{DOMAIN}", f"sip:carol@{DOMAIN}"),
    ]
    assert shows(alice, "carol", "Offline")  # a user, not a mutual contact: no live status

    bob.quit()
    went_offline = seconds_until(lambda: shows(alice, "bob", "Offline"), WITHIN)
    assert went_offline is not None, f"alice still sees {alice.statuses()}"
    assert not registered("bob")

    alice.quit()
    for ua in (alice, bob):
        trace = ua.trace()
        assert "Function not implemented" not in trace
        assert "algorithm=SHA-256" not in trace  # challenged with MD5 alone
        assert "NOTIFY sip:" in trace and "Content-Type: application/pidf+xml\n" in trace
        assert "415 Unsupported" not in trace and "unsupported content-type" not in trace
    assert edge.edge.stats["notify_failures"] == 0
    print(f"{transport}: online after {both_online:.2f} s, offline after {went_offline:.2f} s")
