"""A dialog's entries, kept compactly: inline (deflated) while small, else keys only."""

from __future__ import annotations

import json
import random

from chalicelib.edge_contract import entry_keys
from sip_edge.dialog import HASH_KEY, Peer, SubscriptionDialog

NUMBERS = [f"sip:+336{n:08d}@example.org;user=phone" for n in range(0, 5000 * 7919, 7919)]


def long_uris(count: int, salt: int = 0) -> list[str]:
    rng = random.Random(salt)
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    return [
        "sip:" + "".join(rng.choice(letters) for _ in range(80)) + "@long.example.org"
        for _ in range(count)
    ]


def dialog() -> SubscriptionDialog:
    return SubscriptionDialog(
        subscription_id="s", call_id="c", local_tag="lt", remote_tag="rt",
        local_uri="<sip:rls@example.org>", remote_uri="<sip:alice@example.org>",
        remote_target="sip:alice@192.0.2.1", route_set=[], subscriber="alice@example.org",
        peer=Peer("udp", "192.0.2.1", 5060), expires_at=0.0,
    )  # fmt: skip


def test_a_list_within_the_inline_limit_is_kept_whole():
    d = dialog()
    d.keep_entries(NUMBERS, 65_536)
    assert d.entries == NUMBERS and not d.entry_keys
    assert len(d.packed_entries) < 65_536
    assert d.holding([NUMBERS[7], "sip:stranger@example.org", NUMBERS[-1]]) == [
        NUMBERS[7],
        NUMBERS[-1],
    ]


def test_past_the_inline_limit_only_keys_are_kept_and_still_answer_membership():
    uris = long_uris(5000)
    d = dialog()
    d.keep_entries(uris, 65_536)
    assert d.entries is None and not d.packed_entries
    assert len(d.entry_keys) == 8 * 5000  # 40 KB, whatever the URIs' length
    strangers = long_uris(200, salt=1)
    assert d.holding(uris) == uris
    assert d.holding(strangers) == []
    assert d.holding([strangers[0], uris[4321]]) == [uris[4321]]


def test_a_short_list_is_kept_as_plain_json_and_a_longer_one_deflated():
    d = dialog()
    d.keep_entries(["sip:bob@example.org"], 65_536)
    assert d.packed_entries == b'["sip:bob@example.org"]'
    assert d.entries == ["sip:bob@example.org"]
    assert d.holding(["sip:bob@example.org", "sip:x@example.org"]) == ["sip:bob@example.org"]
    d.keep_entries(NUMBERS, 65_536)
    assert len(d.packed_entries) < len(json.dumps(NUMBERS)) and d.entries == NUMBERS


def test_no_limit_keeps_any_list_inline_and_an_empty_list_is_empty():
    d = dialog()
    d.keep_entries(long_uris(300), None)
    assert d.entries == long_uris(300)
    d.keep_entries([], 0)
    assert d.entries == [] and d.holding(["sip:a@x"]) == []


def test_what_is_kept_is_never_stored_and_a_reload_rebuilds_it():
    uris = long_uris(100)
    d = dialog()
    d.keep_entries(uris, 256)
    stored = d.to_record()
    assert "entry_keys" not in stored and "packed_entries" not in stored
    small = SubscriptionDialog.from_record(stored, uris, inline_limit=None)
    large = SubscriptionDialog.from_record(stored, uris, inline_limit=256)
    assert small.entries == uris and large.entries is None
    assert large.entry_keys == d.entry_keys and large.holding(uris[:3]) == uris[:3]
    # load_edge's keys (made with this process's key) stand for the list: no URIs carried.
    keyed = SubscriptionDialog.from_record(
        stored, None, inline_limit=256, keys=entry_keys(uris, HASH_KEY)
    )
    assert keyed.entry_keys == d.entry_keys and keyed.holding(uris[-2:]) == uris[-2:]
