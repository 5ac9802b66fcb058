"""The subscriptions store: a phone's new dialog rewrites only the watcher items that changed,
pointers decide which subscription a watcher item leads to, and stale items are cleaned."""

from __future__ import annotations

from chalicelib import tables
from chalicelib.live import subscriptions
from chalicelib.presence.watched import Watched, phone_key

NOW = 1_800_000_000


def numbers(n: int) -> list[str]:
    return [f"sip:+336{i:08d}@example.org;user=phone" for i in range(n)]


def save(sub_id: str, entries: list[str], *, watcher: str = "phone-1", expires: int = 3600):
    return subscriptions.save(
        sub_id, edge_id="edge-a", subscriber="alice@example.org", expires_at=NOW + expires,
        version=1, dialog={}, entries=entries, watcher=watcher, now=NOW,
        watched=[Watched(e, phone_key(e[4:16])) for e in entries],
    ).written  # fmt: skip


def test_a_new_dialog_of_the_same_phone_writes_only_what_changed(aws):
    assert save("sub-1", numbers(500)) == 500
    # Linphone ends its dialog and subscribes again with one more contact.
    subscriptions.delete("sub-1")
    assert save("sub-2", numbers(501)) == 1
    found = subscriptions.watchers([phone_key("+33600000007")], now=NOW)
    assert [(w["subscription_id"], w["uris"]) for w in found] == [("sub-2", [numbers(8)[7]])]
    # A contact removed from the list: its watcher item goes.
    assert save("sub-3", numbers(499)) == 0
    assert subscriptions.watchers([phone_key("+33600000499")], now=NOW) == []


def test_two_phones_of_one_account_are_two_watchers(aws):
    save("sub-a", numbers(3), watcher="phone-a")
    save("sub-b", numbers(3), watcher="phone-b")
    found = subscriptions.watchers([phone_key("+33600000001")], now=NOW)
    assert sorted(w["subscription_id"] for w in found) == ["sub-a", "sub-b"]


def test_gone_subscriptions_and_expired_pointers_lead_nowhere(aws):
    save("sub-1", numbers(3))
    subscriptions.delete("sub-1")
    assert subscriptions.watchers([phone_key("+33600000001")], now=NOW) == []
    # Once the pointer has expired too, readers delete the watcher items they meet.
    later = NOW + 3600 + subscriptions.WATCHER_TTL_MARGIN + 1
    assert subscriptions.watchers([phone_key("+33600000001")], now=later) == []
    assert tables.table(tables.WATCHERS).scan()["Count"] == 3  # readers never write
    assert subscriptions.watchers([phone_key("+33600000001")], now=later, cleanup=True) == []
    items = tables.table(tables.WATCHERS).scan()["Items"]
    assert phone_key("+33600000001") not in {i["watched"] for i in items}


def test_refresh_keeps_the_pointer_alive(aws):
    save("sub-1", numbers(2), expires=60)
    assert subscriptions.refresh("sub-1", expires_at=NOW + 10 * 86400, version=2, dialog={})
    far = NOW + 5 * 86400
    assert [w["subscription_id"] for w in subscriptions.watchers(
        [phone_key("+33600000001")], now=far)] == ["sub-1"]  # fmt: skip
    assert not subscriptions.refresh("nope", expires_at=NOW, version=1, dialog={})


def test_a_dialog_stored_before_lists_had_their_own_item_resumes_with_its_list(aws):
    from chalicelib.live.subscriptions import _pack

    tables.table(tables.SUBSCRIPTIONS).put_item(
        Item={"subscription_id": "old-1", "edge_id": "edge-a", "subscriber": "alice@example.org",
              "watcher": "phone-1", "expires_at": NOW + 3600, "version": 3, "dialog": "{}",
              "entries": _pack(numbers(2)), "updated_at": NOW}
    )  # fmt: skip
    assert [s["entries"] for s in subscriptions.load_edge("edge-a", now=NOW)] == [numbers(2)]
    assert subscriptions.get("old-1")["entries"] == numbers(2)


def test_load_edge_is_paged_by_size(aws):
    """Lambda caps an answer at 6 MB: every page stops once past LOAD_EDGE_PAGE_BYTES; the
    cursor walks the rest, each dialog once, and the function answers the same way."""
    import json

    from app import sip_subscriptions

    for i in range(25):
        save(f"sub-{i:02}", numbers(40), watcher=f"phone-{i}")
    one = len(json.dumps(subscriptions.load_edge("edge-a")[0], default=str))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page, cursor = subscriptions.load_edge_page("edge-a", cursor, max_bytes=3 * one)
        pages += 1
        assert len(json.dumps(page, default=str)) < 4 * one + 100
        seen += [s["subscription_id"] for s in page]
        if cursor is None:
            break
    assert sorted(seen) == [f"sub-{i:02}" for i in range(25)] and pages >= 8
    answer = sip_subscriptions({"op": "load_edge", "edge_id": "edge-a"}, None)
    assert len(answer["subscriptions"]) == 25 and answer["next"] is None  # default: 1 MB pages


def test_load_edge_answers_a_list_past_the_edges_inline_limit_as_its_keys(aws):
    """The edge names its hash key and inline limit: a list deflated past the limit comes as
    the keys the edge would make (8 bytes an entry), a smaller one as its entries."""
    import base64

    from app import sip_subscriptions
    from chalicelib.edge_contract import entry_keys

    key = bytes(range(16))
    long = [f"sip:{i:040x}{i * 7919:040x}@long.example.org" for i in range(300)]
    save("sub-long", long, watcher="phone-1")
    save("sub-short", numbers(3), watcher="phone-2")
    request = {"op": "load_edge", "edge_id": "edge-a", "inline_limit": 1024,
               "keys_key_hex": key.hex()}  # fmt: skip
    got = {s["subscription_id"]: s for s in sip_subscriptions(request, None)["subscriptions"]}
    assert "entries" not in got["sub-long"]
    assert base64.b64decode(got["sub-long"]["entry_keys_b64"]) == entry_keys(long, key)
    assert got["sub-short"]["entries"] == numbers(3) and "entry_keys_b64" not in got["sub-short"]
    plain = sip_subscriptions({"op": "load_edge", "edge_id": "edge-a"}, None)["subscriptions"]
    assert all("entries" in s for s in plain)  # an edge that names no key gets the lists


def test_a_number_in_many_books_is_read_in_ranges_and_every_watcher_is_found(aws, monkeypatch):
    """Past its first page, a watched key's items are read in ranges of the watcher id at once
    (a number in thousands of books); the ranges cover every id, hex or not."""
    import hashlib

    monkeypatch.setattr(subscriptions, "WATCHERS_FIRST_PAGE", 5)
    queried: list[dict] = []
    table = tables.table(tables.WATCHERS)
    query = table.query
    monkeypatch.setattr(table, "query", lambda **kw: queried.append(kw) or query(**kw))
    ids = [hashlib.sha256(str(i).encode()).hexdigest()[:32] for i in range(60)]
    ids += ["0", "f" * 40, "Zed", "~last"]  # boundaries, and ids that are not hex
    for n, watcher in enumerate(ids):
        save(f"sub-{n}", numbers(2), watcher=watcher)
    found = subscriptions.watchers([phone_key("+33600000001")], now=NOW)
    assert sorted(w["subscription_id"] for w in found) == sorted(f"sub-{n}" for n in range(64))
    assert all(w["uris"] == [numbers(2)[1]] for w in found)
    assert len(queried) >= 1 + subscriptions.WATCHER_RANGES
    small = subscriptions.watchers([phone_key("+33600000099")], now=NOW)
    assert small == []  # a key nobody watches: one Query
