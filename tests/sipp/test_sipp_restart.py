"""SIPp subscribers keep receiving live updates when the edge restarts under them.

Five SIPp phones, each its own account and process, hold list subscriptions over UDP. The edge
stops and a new one starts with the same edge id and port: it reloads the dialogs through the
functions and long-polls the same queue. A sign-up made while no edge runs and an unlink made
after the restart must reach every phone, from the new edge, without any re-subscribe; the
unlink as full state, as Linphone needs (restart.xml checks both). The sign-up comes as a
partial NOTIFY: the clean stop stored that each phone holds a full state.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib import accounts
from chalicelib.live import subscriptions
from devstack.streams import StreamReplayer
from testkit.wait import wait_until
from tests.conftest import require_tool
from tests.edge.conftest import DOMAIN, EdgeThread, make_account
from tests.sipp.test_sipp import MD5_FIRST, run_sipp

pytestmark = pytest.mark.sipp

EDGE_ID = "edge-sipp-restart"
PHONES = [f"phone{i}" for i in range(5)]


def edge_on(port: int) -> EdgeThread:
    # No throttle: each change goes out as soon as the edge reads it from its queue.
    return EdgeThread(sip_port=port, edge_id=EDGE_ID, notify_min_interval=0.0,
                      sip_digest_algorithms=MD5_FIRST)  # fmt: skip


def answered_first_notify(edge: EdgeThread, count: int) -> bool:
    """Every dialog is stored and its phone answered its first (full-state) NOTIFY, which the
    clean stop then stores: the restart is under live updates only. (A restart before that
    answer gets the phone a full state from the next edge: tests/edge/test_live_updates.py.)"""
    dialogs = list(edge.edge.subscriptions.dialogs.values())
    stored = subscriptions.load_edge(EDGE_ID)
    return len(stored) == len(dialogs) == count and all(d.synced for d in dialogs)


def test_udp_subscribers_keep_receiving_updates_across_an_edge_restart(aws, tmp_path):
    sipp = require_tool("sipp", "sip-tester")
    for name in PHONES:
        make_account(name)
    make_account("bob", "+33612345678")
    world = StreamReplayer()  # from here on: the changes the phones must hear about
    first = edge_on(0)
    port = first.address[1]
    second = None
    pool = ThreadPoolExecutor(len(PHONES))
    try:
        runs = {}
        for name in PHONES:
            (tmp_path / name).mkdir()
            runs[name] = pool.submit(
                run_sipp, sipp, "restart.xml", first, tmp_path / name, user=name, timeout=25
            )
        assert wait_until(lambda: answered_first_notify(first, len(PHONES)), 15), {
            n: r.result().explain() for n, r in runs.items() if r.done()
        }
        stopping = first.edge
        first.stop()
        assert stopping.stats["synced_at_stop"] == len(PHONES)
        first = None
        # Dan signs up while no edge runs: the change waits in the edge's queue (the old
        # edge's last long poll, still running, must hand it back rather than drop it).
        make_account("dan", "+33699999999")
        world.pump()

        second = edge_on(port)
        assert second.edge.stats["resumed"] == len(PHONES)
        # One update at a time, so each phone sees the sign-up and the unlink apart.
        assert wait_until(lambda: second.edge.stats["notifies"] >= len(PHONES), 10)
        accounts.unlink_phone(f"bob@{DOMAIN}")
        world.pump()

        for name, future in runs.items():
            run = future.result()
            assert run.returncode == 0, f"{name}: {run.explain()}"
        assert second.edge.stats["notify_failures"] == 0
    finally:
        pool.shutdown(wait=True)
        for running in (first, second):
            if running is not None:
                running.stop()
