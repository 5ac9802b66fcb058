"""`python -m bench dialogs [--dialogs=N]`: edge memory per 5,000-entry subscription dialog.

Dialogs are built the way a restarted edge reloads them (`SubscriptionDialog.from_json` from
what `load_edge` answers, entries as the phone sent them), for two URI shapes: Linphone's
phone numbers (`sip:+336...@domain;user=phone`) and long SIP URIs (120 characters). Memory is
what tracemalloc sees allocated by the dialogs (median of 3 runs), next to the peer of the
same run: the entries' raw bytes, i.e. what any representation keeping the URIs must hold.
The RSS after loading N such dialogs is printed too (issue 16 asks for 1,000: pass
`--dialogs=1000` on a machine with the memory for it).
"""

from __future__ import annotations

import gc
import resource
import statistics
import tracemalloc
from typing import Any

from sip_edge.dialog import Peer, SubscriptionDialog

ENTRIES = 5000


def _entries(kind: str, salt: int) -> list[str]:
    if kind == "numbers":
        return [f"sip:+336{salt:02d}{i:06d}@example.org;user=phone" for i in range(ENTRIES)]
    pad = "x" * 80
    return [
        f"sip:user{salt:03d}-{i:05d}-{pad}@a-rather-long-domain.example.org" for i in range(ENTRIES)
    ]


def _stored(sub: int) -> dict[str, Any]:
    dialog = SubscriptionDialog(
        subscription_id=f"sub-{sub}", call_id=f"call-{sub}", local_tag="lt", remote_tag="rt",
        local_uri="<sip:rls@example.org>", remote_uri="<sip:alice@example.org>",
        remote_target="sip:alice@192.0.2.1:5060", route_set=[], subscriber="alice@example.org",
        peer=Peer("udp", "192.0.2.1", 5060), expires_at=0.0,
    )  # fmt: skip
    return dialog.to_json()


def _measure(kind: str, count: int) -> tuple[float, float]:
    """(bytes per dialog held, raw entry bytes per dialog)."""
    answers = [(_stored(i), _entries(kind, i % 100)) for i in range(count)]
    raw = statistics.mean(sum(len(e) for e in entries) for _, entries in answers)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held = [SubscriptionDialog.from_json(data, list(entries)) for data, entries in answers]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del held
    # The entry strings themselves came with the answer and are kept by reference; count them.
    strings = sum(e.__sizeof__() for _, entries in answers for e in entries) / count
    return (after - before) / count + strings, raw


def run(argv: list[str]) -> None:
    count = 20
    for arg in argv:
        if arg.startswith("--dialogs="):
            count = int(arg.split("=", 1)[1])
    print(f"| {ENTRIES:,} entries per dialog ({count} dialogs, median of 3) | edge memory per"
          " dialog | entries' raw bytes (peer) | ratio |")  # fmt: skip
    print("|---|---:|---:|---:|")
    for kind in ("numbers", "long URIs"):
        runs = [_measure(kind, count) for _ in range(3)]
        held = statistics.median(r[0] for r in runs)
        raw = statistics.median(r[1] for r in runs)
        print(f"| {kind} | {held / 1024:,.0f} KB | {raw / 1024:,.0f} KB | {held / raw:.2f} |")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"\npeak RSS of this process: {rss / 1024:,.0f} MB")
