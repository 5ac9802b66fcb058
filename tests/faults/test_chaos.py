"""The chaos run, short: SIPp phones, SIPp's short subscription cycles and REST sign-ups
while faults switch on and off and the edge is SIGKILLed once; then zero lost updates (checked
on what SIPp received), no 500, one SMS per sign-up, bounded RSS. CHAOS_SECONDS sets its length
(40 s here; `python -m bench chaos` runs 300)."""

from __future__ import annotations

import os

from testkit.chaos import run_chaos
from tests.conftest import require_tool

SECONDS = float(os.environ.get("CHAOS_SECONDS", "40"))
RSS_BOUND_MB = 400


def test_chaos_loses_nothing(moto_server, tmp_path):
    require_tool("sipp", "sip-tester")
    report = run_chaos(
        moto_server, tmp_path, seconds=SECONDS, fault_period=SECONDS / 5, quiet=SECONDS / 4
    )
    print(report.table())
    assert report.kills == 1
    assert report.fault_windows, "no fault was switched on"
    assert report.sipp_exit == 0, report.sipp_errors
    assert report.signups >= 3
    assert report.lost == 0, report.mismatches
    assert report.terminated == 0, "a subscription was ended by a fault"
    assert 500 not in report.probe_statuses, report.probe_statuses
    assert report.probe_statuses.get(200), "the probe never succeeded"
    assert report.probe_slow == 0, "a SIP request waited more than 3 s for its answer"
    assert 500 not in report.rest_statuses, report.rest_statuses
    # The short cycles: 200 or a fast 503, nothing else.
    assert set(report.cycle_statuses) <= {200, 503}, report.cycle_statuses
    assert report.cycles["completed"], report.cycles
    assert not report.extra_sms, f"a retried sign-up sent a second SMS: {report.extra_sms}"
    assert report.codes_lost == 0, "a sign-up's code did not work"
    assert max(report.rss_kb) < RSS_BOUND_MB * 1024, f"edge RSS {max(report.rss_kb)} kB"
