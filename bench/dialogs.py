"""`python -m bench dialogs [--dialogs=N] [--reload=N]`: edge memory per 5,000-entry dialog.

Dialogs are built the way a restarted edge reloads them (`SubscriptionDialog.from_record` from
what `load_edge` answers, entries as the phone sent them, EDGE_DIALOG_INLINE_ENTRIES_BYTES at
its default), for two URI shapes: Linphone's phone numbers (`sip:+336...@domain;user=phone`,
kept inline, deflated) and long SIP URIs (120 characters, incompressible: kept as keys only).
Memory is what tracemalloc sees allocated by the dialogs (median of 3 runs), next to the peer
of the same run: the entries' raw bytes, i.e. what any representation keeping the URIs must
hold. `--reload=N` restarts a real edge process holding N stored dialogs (bench/reload.py).
"""

from __future__ import annotations

import gc
import random
import statistics
import tracemalloc

from chalicelib import settings
from chalicelib.edge_contract import DialogRecord
from sip_edge.dialog import Peer, SubscriptionDialog

ENTRIES = 5000


def entry_list(kind: str, salt: int) -> list[str]:
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


def stored_dialog(sub: int, peer: Peer | None = None) -> DialogRecord:
    """A dialog as an edge stores it (`to_record`), its NOTIFYs going to `peer`."""
    peer = peer or Peer("udp", "192.0.2.1", 5060)
    dialog = SubscriptionDialog(
        subscription_id=f"sub-{sub}", call_id=f"call-{sub}", local_tag="lt", remote_tag="rt",
        local_uri="<sip:rls@example.org>", remote_uri="<sip:alice@example.org>",
        remote_target=f"sip:alice@{peer.host}:{peer.port}", route_set=[],
        subscriber="alice@example.org",
        # As stored again once its phone answered a full state (a refresh or an update did).
        peer=peer, expires_at=0.0, version=1, synced=True,
    )  # fmt: skip
    return dialog.to_record()


def _measure(kind: str, count: int) -> tuple[float, float]:
    """(bytes per dialog held, raw entry bytes per dialog)."""
    answers = [(stored_dialog(i), entry_list(kind, i % 100)) for i in range(count)]
    raw = statistics.mean(sum(len(e) for e in entries) for _, entries in answers)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    limit = settings.get().edge_dialog_inline_entries_bytes
    held = [
        SubscriptionDialog.from_record(data, list(entries), inline_limit=limit)
        for data, entries in answers
    ]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del held
    # What stays allocated once the dialogs are built: the answer's entry strings are packed
    # into each dialog and not kept (the edge unpacks them only to look the list up again).
    return (after - before) / count, raw


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
        from bench import reload as restart

        print()
        restart.run(reload, "long URIs" if "--long" in argv else "numbers")
