"""The chaos run, short: faults on and off, one SIGKILL of the edge, then zero lost updates, no
500, bounded RSS. CHAOS_SECONDS sets its length (40 s here; `python -m bench chaos` runs 300)."""

from __future__ import annotations

import os

from bench.chaos import run_chaos

SECONDS = float(os.environ.get("CHAOS_SECONDS", "40"))
RSS_BOUND_MB = 400


def test_chaos_loses_nothing(moto_server, tmp_path):
    report = run_chaos(moto_server, tmp_path, seconds=SECONDS, fault_period=SECONDS / 5)
    print(report.table())
    assert report.kills == 1
    assert report.fault_windows, "no fault was switched on"
    assert report.signups >= 3
    assert report.lost == 0, report.mismatches
    assert report.terminated == 0, "a subscription was ended by a fault"
    assert 500 not in report.probe_statuses, report.probe_statuses
    assert report.probe_statuses.get(200), "the probe never succeeded"
    assert report.probe_slow == 0, "a SIP request waited more than 3 s for its answer"
    assert max(report.rss_kb) < RSS_BOUND_MB * 1024, f"edge RSS {max(report.rss_kb)} kB"
