"""`python -m bench dialogs [--dialogs=N]`: edge memory per 5,000-entry subscription dialog.

Dialogs are built the way a restarted edge reloads them (`SubscriptionDialog.from_json` from
what `load_edge` answers, entries as the phone sent them), for two URI shapes: Linphone's
phone numbers (`sip:+336...@domain;user=phone`) and long SIP URIs (120 characters). Memory is
what tracemalloc sees allocated by the dialogs (median of 3 runs), next to the peer of the
same run: the entries' raw bytes, i.e. what any representation keeping the URIs must hold.
`--reload=N` also reports the RSS of this process before and after it reloads N dialogs of
5,000 numbers the way a restarted edge does (issue 16 asks for 1,000: `--reload=1000`).
"""

from __future__ import annotations

import gc
import random
import statistics
import tracemalloc
from typing import Any

from sip_edge.dialog import Peer, SubscriptionDialog

ENTRIES = 5000


def _entries(kind: str, salt: int) -> list[str]:
    """Random numbers and names, as an address book holds them: nothing a compressor could
    exploit beyond what real entries share (the scheme, the domain, `;user=phone`)."""
    rng = random.Random(salt)
    if kind == "numbers":
        return [
            f"sip:+336{rng.randrange(10**8):08d}@example.org;user=phone" for _ in range(ENTRIES)
        ]
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    return [
        "sip:"
        + "".join(rng.choice(letters) for _ in range(80))
        + "@a-rather-long-domain.example.org"
        for _ in range(ENTRIES)
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
    # What stays allocated once the dialogs are built: the answer's entry strings are packed
    # into each dialog and not kept (the edge unpacks them only to look the list up again).
    return (after - before) / count, raw


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return kib / 1024


def _reload_rss(count: int) -> tuple[float, float]:
    """(RSS before, RSS after) an edge process reloads `count` 5,000-number dialogs, one page
    at a time as `load_edge` hands them (each answer's strings are dropped once packed)."""
    gc.collect()
    before = _rss_mib()
    held = []
    for i in range(count):
        held.append(SubscriptionDialog.from_json(_stored(i), _entries("numbers", i)))
    gc.collect()
    after = _rss_mib()
    del held
    return before, after


def run(argv: list[str]) -> None:
    count = 20
    reload = 0
    for arg in argv:
        if arg.startswith("--dialogs="):
            count = int(arg.split("=", 1)[1])
        if arg.startswith("--reload="):
            reload = int(arg.split("=", 1)[1])
    print(f"| {ENTRIES:,} entries per dialog ({count} dialogs, median of 3) | edge memory per"
          " dialog | entries' raw bytes (peer) | ratio |")  # fmt: skip
    print("|---|---:|---:|---:|")
    for kind in ("numbers", "long URIs"):
        runs = [_measure(kind, count) for _ in range(3)]
        held = statistics.median(r[0] for r in runs)
        raw = statistics.median(r[1] for r in runs)
        print(f"| {kind} | {held / 1024:,.0f} KB | {raw / 1024:,.0f} KB | {held / raw:.2f} |")
    if reload:
        before, after = _reload_rss(reload)
        print(
            f"\nRSS reloading {reload:,} dialogs of {ENTRIES:,} numbers: {before:,.0f} MB before,"
            f" {after:,.0f} MB after (+{after - before:,.0f} MB)"
        )
