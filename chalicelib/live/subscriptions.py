"""Persisted list subscriptions and the watchers index (live contact lists, RFC 6665 dialogs).

A `Subscription` item holds what an edge needs to go on notifying a dialog after a restart: the
dialog state, the NOTIFY version and the owning edge. The subscriber's list (deflated) lives in a
list item of its own (`l#<subscription>`), written only by a new dialog: refreshes and version
updates rewrite the small dialog item alone, so each costs one write unit whatever the list size.

The watchers index maps what a list watches — `p#<phone hash>` for numbers, `u#<aor>` for SIP
accounts — to a *watcher*: one phone of one account (its `+sip.instance`), stable across its
dialogs. A pointer item (`w#<watcher>` in the subscriptions table) names the watcher's current
subscription and the keys it watches. Linphone starts a new dialog with its whole list each time
a contact is added, so a new subscription writes only the watcher items that changed and moves
the pointer, instead of rewriting one item per number. Watcher items carry no expiry: the
pointer does, and readers drop the watcher items of a pointer that is gone.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from chalicelib import clock, dynamo, edge_contract, settings, tables
from chalicelib.presence.watched import Watched, account_key, phone_key, watched_keys

# A watcher's pointer outlives its subscription by this margin: a phone whose dialog just ended
# (Linphone ends it to restart its list) usually subscribes again at once, and then only the
# watcher items that changed are written.
WATCHER_TTL_MARGIN = 2 * 86400
POINTER_PREFIX = "w#"
LIST_PREFIX = "l#"
# Watcher items of vanished pointers are deleted as readers meet them, this many per read.
LAZY_CLEANUP_MAX = 100


def _pack_text(text: str) -> str:
    return base64.b64encode(zlib.compress(text.encode(), 6)).decode()


def _unpack_text(blob: str) -> str:
    return zlib.decompress(base64.b64decode(blob)).decode()


def _pack(entries: list[str]) -> str:
    return _pack_text(json.dumps(entries))


def _unpack(blob: str) -> list[str]:
    return json.loads(_unpack_text(blob))


@dataclass(frozen=True)
class Saved:
    """What a new subscription wrote, and the watcher keys whose lists should look again at its
    subscriber (none when the subscriber is no account: nobody's view of it can change)."""

    written: int
    look_again: frozenset[str]


def _pointer_and_subscriber(
    watcher: str, subscriber: str
) -> tuple[dict[str, Any] | None, frozenset[str]]:
    """The watcher's pointer and the subscriber's watcher keys, in one consistent batch read."""
    aor = subscriber.lower()
    found = dynamo.batch_get_many(
        {tables.SUBSCRIPTIONS: [POINTER_PREFIX + watcher], tables.ACCOUNTS: [aor]},
        projections={tables.ACCOUNTS: "aor, phone"},
        consistent=True,
    )
    account = found[tables.ACCOUNTS].get(aor)
    keys: frozenset[str] = frozenset()
    if account is not None:
        number = account.get("phone")
        keys = frozenset({account_key(aor), *([phone_key(number)] if number else [])})
    return found[tables.SUBSCRIPTIONS].get(POINTER_PREFIX + watcher), keys


def save(
    sub_id: str,
    *,
    edge_id: str,
    subscriber: str,
    expires_at: int,
    version: int,
    dialog: Mapping[str, Any],
    entries: list[str],
    watched: Iterable[Watched],
    watcher: str | None = None,
    now: float | None = None,
) -> Saved:
    """Create a subscription and point its watcher at it.

    One batch read (the watcher's pointer, and the subscriber's account for the look-again that
    follows) and one batch of writes: the dialog item, its list item, the watcher items that
    changed and the pointer.
    """
    now = clock.now() if now is None else now
    watcher = watcher or sub_id
    wanted: dict[str, list[str]] = {}
    for w in watched:
        wanted.setdefault(w.key, []).append(w.uri)
    previous, look_again = _pointer_and_subscriber(watcher, subscriber)
    had: dict[str, list[str]] = json.loads(_unpack_text(previous["keys"])) if previous else {}
    # The pointer and the list outlive the dialog by a margin, so refreshes need not touch them.
    keep_until = int(expires_at + WATCHER_TTL_MARGIN)
    subs, watchers_table = tables.SUBSCRIPTIONS, tables.WATCHERS
    writes: list[tuple[tables.TableSpec, dict[str, Any]]] = [
        (
            subs,
            {
                "put": {
                    "subscription_id": sub_id,
                    "edge_id": edge_id,
                    "subscriber": subscriber.lower(),  # the by_subscriber index, folded like AORs
                    "watcher": watcher,
                    "expires_at": expires_at,
                    "kept_until": keep_until,
                    "version": version,
                    "dialog": json.dumps(dialog),
                    "updated_at": int(now),
                    "created_ms": int(clock.now() * 1000),  # which dialogs a revocation ends
                }
            },
        ),
        (
            subs,
            {
                "put": {
                    "subscription_id": LIST_PREFIX + sub_id,
                    "entries": _pack(entries),
                    "expires_at": keep_until,
                }
            },
        ),
    ]
    written = 0
    for key, uris in wanted.items():
        if had.get(key) != uris:
            item = {"watched": key, "watcher": watcher, "subscriber": subscriber, "uris": uris}
            writes.append((watchers_table, {"put": item}))
            written += 1
    for key in had.keys() - wanted.keys():
        writes.append((watchers_table, {"delete": {"watched": key, "watcher": watcher}}))
    writes.append(
        (
            subs,
            {
                "put": {
                    "subscription_id": POINTER_PREFIX + watcher,
                    "current": sub_id,
                    "subscriber": subscriber.lower(),
                    "keys": _pack_text(json.dumps(wanted)),
                    "expires_at": keep_until,
                }
            },
        )
    )
    dynamo.batch_write(writes)
    return Saved(written, look_again)


def refresh(sub_id: str, *, expires_at: int, version: int, dialog: Mapping[str, Any]) -> bool:
    """Extend a live subscription (refresh SUBSCRIBE) or record its new version/CSeq.

    Answers False when the subscription is unknown (the edge then answers 481). One UpdateItem
    of the small dialog item; only when the new expiry comes within half the margin of what the
    pointer and the list are kept for (about once a day for a phone refreshing hourly) are
    those two extended too.
    """
    table = tables.table(tables.SUBSCRIPTIONS)
    try:
        # ALL_OLD costs no more than UPDATED_OLD (units follow the item's size, not the answer)
        # and saves reading the item again for its watcher.
        before = table.update_item(
            Key={"subscription_id": sub_id},
            UpdateExpression="SET expires_at = :e, version = :v, dialog = :d, updated_at = :n",
            ConditionExpression="attribute_exists(subscription_id)",
            ExpressionAttributeValues={
                ":e": expires_at,
                ":v": version,
                ":d": json.dumps(dialog),
                ":n": clock.now_int(),
            },
            ReturnValues="ALL_OLD",
        )["Attributes"]
    except ClientError as exc:
        if not dynamo.condition_failed(exc):
            raise
        return False
    kept_until = int(before.get("kept_until", 0))
    if expires_at + WATCHER_TTL_MARGIN // 2 <= kept_until:
        return True  # a version update, or a refresh well within what is kept
    _keep(table, sub_id, str(before.get("watcher") or ""), int(expires_at + WATCHER_TTL_MARGIN))
    return True


def _keep(table: Any, sub_id: str, watcher: str, until: int) -> None:
    """Extend the list item and the watcher's pointer (if still this dialog's) to `until`."""
    table.update_item(
        Key={"subscription_id": sub_id},
        UpdateExpression="SET kept_until = :k",
        ExpressionAttributeValues={":k": until},
    )
    _update_if(
        table,
        Key={"subscription_id": LIST_PREFIX + sub_id},
        UpdateExpression="SET expires_at = :e",
        ConditionExpression="attribute_exists(subscription_id)",
        ExpressionAttributeValues={":e": until},
    )
    if watcher:  # refused when a newer dialog of the same phone owns the watcher now
        _update_if(
            table,
            Key={"subscription_id": POINTER_PREFIX + watcher},
            UpdateExpression="SET expires_at = :e",
            ConditionExpression="#c = :s",
            ExpressionAttributeNames={"#c": "current"},
            ExpressionAttributeValues={":e": until, ":s": sub_id},
        )


def _update_if(table: Any, **kwargs: Any) -> None:
    """A conditional update whose refusal is an answer, not an error."""
    try:
        table.update_item(**kwargs)
    except ClientError as exc:
        if not dynamo.condition_failed(exc):
            raise


def _from_item(item: dict[str, Any], entries: list[str] | None) -> edge_contract.StoredSubscription:
    out: edge_contract.StoredSubscription = {
        "subscription_id": item["subscription_id"],
        "edge_id": item["edge_id"],
        "subscriber": item["subscriber"],
        "expires_at": int(item["expires_at"]),
        "version": int(item["version"]),
        "dialog": json.loads(item["dialog"]),
    }
    if entries is not None:
        out["entries"] = entries
    return out


def _entries(item: dict[str, Any], listed: dict[str, Any] | None) -> list[str]:
    """A dialog's list: its list item, or inline in items stored before lists had their own."""
    if listed is not None:
        return _unpack(listed["entries"])
    return _unpack(item["entries"]) if "entries" in item else []


def get(sub_id: str) -> edge_contract.StoredSubscription | None:
    table = tables.table(tables.SUBSCRIPTIONS)
    item = table.get_item(Key={"subscription_id": sub_id}, ConsistentRead=True).get("Item")
    if item is None:
        return None
    key = {"subscription_id": LIST_PREFIX + sub_id}
    listed = table.get_item(Key=key, ConsistentRead=True).get("Item")
    return _from_item(item, _entries(item, listed))


def stored_list(
    sub_id: str, subscriber: str, counter: dynamo.CallCounter | None = None
) -> list[str] | None:
    """The list a subscription of `subscriber` was made with, or None (unknown, or another
    account's): what an edge holding only its keys asks for a full-state NOTIFY."""
    found = dynamo.batch_get(tables.SUBSCRIPTIONS, [sub_id, LIST_PREFIX + sub_id], counter=counter)
    item = found.get(sub_id)
    if item is None or str(item.get("subscriber", "")) != subscriber.lower():
        return None
    return _entries(item, found.get(LIST_PREFIX + sub_id))


def delete(sub_id: str) -> None:
    """Remove a subscription and its list (unsubscribe, expiry, 481 from the phone).

    Its watcher items stay with the watcher's pointer, which expires on its own: a phone that
    subscribes again soon (Linphone does, to change its list) reuses them.
    """
    subs = tables.SUBSCRIPTIONS
    dynamo.batch_write(
        [
            (subs, {"delete": {"subscription_id": sub_id}}),
            (subs, {"delete": {"subscription_id": LIST_PREFIX + sub_id}}),
        ]
    )


def load_edge(edge_id: str, now: float | None = None) -> list[edge_contract.StoredSubscription]:
    """Live subscriptions owned by one edge (its restart reloads them), every page."""
    out: list[edge_contract.StoredSubscription] = []
    cursor: str | None = None
    while True:
        page, cursor = load_edge_page(edge_id, cursor, now=now)
        out += page
        if cursor is None:
            return out


def _as_keys(
    entry: edge_contract.StoredSubscription, listed: dict[str, Any], keys: tuple[bytes, int]
) -> bool:
    """Give a list deflated past the edge's inline limit as its entry keys: the edge keeps
    nothing more of it, and 5,000 long URIs weigh ~0.6 MB in an answer, their keys 54 KB."""
    key, inline_limit = keys
    packed = base64.b64decode(listed["entries"])  # deflated exactly as the edge packs it
    if len(packed) <= inline_limit:
        return False
    uris = json.loads(zlib.decompress(packed))
    entry["entry_keys_b64"] = base64.b64encode(edge_contract.entry_keys(uris, key)).decode()
    return True


def load_edge_page(
    edge_id: str, cursor: str | None = None, *, max_bytes: int | None = None,
    now: float | None = None, keys: tuple[bytes, int] | None = None,
) -> tuple[list[edge_contract.StoredSubscription], str | None]:  # fmt: skip
    """One answer's worth of an edge's live subscriptions, from after `cursor` (the last
    subscription id of the previous page), and the cursor of the next page (None: done).

    A page stops once its JSON passes `max_bytes` (LOAD_EDGE_PAGE_BYTES): Lambda caps an
    answer at 6 MB, and a 5,000-entry list alone can weigh a megabyte. With `keys` (the
    edge's hash key and inline limit), a list larger than that limit comes as its keys."""
    now = clock.now() if now is None else now
    page_bytes = settings.get().load_edge_page_bytes if max_bytes is None else max_bytes
    table = tables.table(tables.SUBSCRIPTIONS)
    out: list[edge_contract.StoredSubscription] = []
    size = 0
    kwargs: dict[str, Any] = {
        "IndexName": "by_edge",
        "KeyConditionExpression": Key("edge_id").eq(edge_id),
        "Limit": 10,  # lists are read ten at a time, so a page overshoots by little
    }
    if cursor:
        kwargs["ExclusiveStartKey"] = {"edge_id": edge_id, "subscription_id": cursor}
    while True:
        page = table.query(**kwargs)
        ids = [i["subscription_id"] for i in page["Items"]]
        # The index holds keys only, and may lag: read each item to be exact.
        found = dynamo.batch_get(tables.SUBSCRIPTIONS, ids + [LIST_PREFIX + i for i in ids])
        for sub_id in ids:
            item = found.get(sub_id)
            if item and int(item["expires_at"]) > now and item["edge_id"] == edge_id:
                listed = found.get(LIST_PREFIX + sub_id)
                entry = _from_item(item, None)
                if keys is None or listed is None or not _as_keys(entry, listed, keys):
                    entry["entries"] = _entries(item, listed)
                out.append(entry)
                size += len(json.dumps(entry, default=str))
            if size >= page_bytes:
                return out, sub_id
        if "LastEvaluatedKey" not in page:
            return out, None
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def of_subscriber(
    subscriber: str,
    *,
    before_ms: int | None = None,
    now: float | None = None,
    details: bool = False,
) -> list[dict[str, Any]]:
    """The live subscriptions of one account made before `before_ms` (epoch ms; all if
    None): [{subscription_id, edge_id}], with `details` also {device, user_agent,
    updated_at, expires_at} (the account's devices list)."""
    now = clock.now() if now is None else now
    table = tables.table(tables.SUBSCRIPTIONS)
    kwargs: dict[str, Any] = {
        "IndexName": "by_subscriber",
        "KeyConditionExpression": Key("subscriber").eq(subscriber.lower()),
    }
    ids: list[str] = []
    while True:
        page = table.query(**kwargs)
        ids += [
            i["subscription_id"]
            for i in page["Items"]
            if not i["subscription_id"].startswith(POINTER_PREFIX)
        ]
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    projection = "subscription_id, edge_id, expires_at, created_ms"
    if details:
        projection += ", dialog, updated_at"
    items = dynamo.batch_get(tables.SUBSCRIPTIONS, ids, projection=projection)
    out = []
    for i in items.values():
        if int(i["expires_at"]) <= now:
            continue
        if before_ms is not None and int(i.get("created_ms", 0)) >= before_ms:
            continue
        found: dict[str, Any] = {"subscription_id": i["subscription_id"], "edge_id": i["edge_id"]}
        if details:
            dialog = json.loads(i.get("dialog") or "{}")
            found.update(
                device=str(dialog.get("device") or ""),
                user_agent=str(dialog.get("user_agent") or ""),
                updated_at=int(i.get("updated_at", 0)),
                expires_at=int(i["expires_at"]),
            )
        out.append(found)
    return out


def watchers(
    keys: Iterable[str], now: float | None = None, *, cleanup: bool = False
) -> list[dict[str, Any]]:
    """Live subscriptions watching any of `keys`, with the matching URIs and owning edge.

    With `cleanup` (the stream handler, which may write the index), the watcher items of
    expired pointers met on the way are deleted.
    """
    now = clock.now() if now is None else now
    table = tables.table(tables.WATCHERS)
    found: dict[str, dict[str, Any]] = {}
    for key in set(keys):
        for item in _watcher_items(table, key).values():
            entry = found.setdefault(
                item["watcher"],
                {"watcher": item["watcher"], "subscriber": item["subscriber"], "uris": [],
                 "keys": []},
            )  # fmt: skip
            entry["keys"].append(key)
            entry["uris"].extend(u for u in item["uris"] if u not in entry["uris"])
    if not found:
        return []
    pointers = dynamo.batch_get(
        tables.SUBSCRIPTIONS,
        [POINTER_PREFIX + w for w in found],
        projection="subscription_id, #c, expires_at",
        names={"#c": "current"},
    )
    current = {
        p["subscription_id"][len(POINTER_PREFIX) :]: p["current"]
        for p in pointers.values()
        if int(p["expires_at"]) > now
    }
    if cleanup:
        _forget_watchers([w for w in found.values() if w["watcher"] not in current])
    live = dynamo.batch_get(
        tables.SUBSCRIPTIONS,
        set(current.values()),
        projection="subscription_id, expires_at, edge_id",
    )
    out = []
    for watcher, entry in found.items():
        sub = live.get(current.get(watcher, ""))
        if sub is not None and int(sub["expires_at"]) > now:
            out.append(
                {
                    "subscription_id": sub["subscription_id"],
                    "edge_id": sub["edge_id"],
                    "subscriber": entry["subscriber"],
                    "uris": entry["uris"],
                }
            )
    return out


#: A watched key with more watcher items than this (a number in thousands of books) is read in
#: WATCHER_RANGES ranges of its sort key at once rather than page after page: one change of a
#: number in 100,000 books reads ~20 MB, 20 pages of 1 MB one after the other; the ranges
#: also let DynamoDB spread a hot item collection over partitions (it splits one by sort key).
WATCHERS_FIRST_PAGE = 2000
WATCHER_RANGES = 16


def _watcher_items(table: Any, key: str) -> dict[str, dict[str, Any]]:
    """Every watcher item of one watched key, by watcher id."""
    condition = Key("watched").eq(key)
    page = table.query(KeyConditionExpression=condition, Limit=WATCHERS_FIRST_PAGE)
    items = {i["watcher"]: i for i in page["Items"]}
    if "LastEvaluatedKey" not in page:
        return items
    # Watcher ids are hex digests (edge_contract.watcher_id): split at their first digit. The
    # ranges cover every string, whatever the ids; the first page is read again within them.
    digits = "0123456789abcdef"
    step = len(digits) // WATCHER_RANGES
    bounds = [digits[i] for i in range(step, len(digits), step)]
    watcher = Key("watcher")
    ranges = [condition & watcher.lt(bounds[0])]
    ranges += [condition & watcher.between(a, b) for a, b in zip(bounds, bounds[1:], strict=False)]
    ranges.append(condition & watcher.gte(bounds[-1]))

    def read(part: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"KeyConditionExpression": part}
        while True:
            page = table.query(**kwargs)
            out += page["Items"]
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    with ThreadPoolExecutor(max_workers=len(ranges)) as pool:
        for part in pool.map(read, ranges):
            items.update((i["watcher"], i) for i in part)
    return items


def _forget_watchers(gone: list[dict[str, Any]]) -> None:
    """Delete the watcher items of pointers that expired (phones that stopped subscribing)."""
    pairs = [(key, w["watcher"]) for w in gone for key in w["keys"]][:LAZY_CLEANUP_MAX]
    if not pairs:
        return
    with tables.table(tables.WATCHERS).batch_writer() as batch:
        for key, watcher in pairs:
            batch.delete_item(Key={"watched": key, "watcher": watcher})


def handle(
    payload: edge_contract.SubscriptionsRequest,
    on_saved: Callable[[frozenset[str]], object] | None = None,
) -> edge_contract.SubscriptionsAnswer | edge_contract.ErrorAnswer:
    """The `sip_subscriptions` function: the edge's store of dialogs.

    ops: save {subscription_id, edge_id, subscriber, watcher, expires_at, version, dialog,
    entries}, refresh {subscription_id, expires_at, version, dialog} -> {"found": bool},
    delete {subscription_id}, load_edge {edge_id, cursor, inline_limit, keys_key_hex} ->
    {"subscriptions": [...], "next"} (paged: call again with `cursor` = `next` until it is
    None; see edge_contract.SubscriptionLoad for the keys). The dialog is stored as it comes
    (`edge_contract.DialogRecord`, versioned by the edge). After a save, `on_saved` gets the
    watcher keys whose lists should look again at the subscriber (`Saved.look_again`).
    """
    if payload["op"] == "save":
        entries = list(payload["entries"])
        saved = save(
            str(payload["subscription_id"]),
            edge_id=str(payload["edge_id"]),
            subscriber=str(payload["subscriber"]),
            expires_at=int(payload["expires_at"]),
            version=int(payload["version"]),
            dialog=payload["dialog"],
            entries=entries,
            watched=watched_keys(entries, str(payload["subscriber"])),
            watcher=payload.get("watcher"),
        )
        if on_saved is not None:
            on_saved(saved.look_again)
        return {"saved": True}
    if payload["op"] == "refresh":
        found = refresh(
            str(payload["subscription_id"]),
            expires_at=int(payload["expires_at"]),
            version=int(payload["version"]),
            dialog=payload["dialog"],
        )
        return {"found": found}
    if payload["op"] == "delete":
        delete(str(payload["subscription_id"]))
        return {"deleted": True}
    if payload["op"] == "load_edge":
        keys = None
        key_hex, inline_limit = payload.get("keys_key_hex"), payload.get("inline_limit")
        if key_hex and inline_limit is not None:
            keys = (bytes.fromhex(str(key_hex)), int(inline_limit))
        page, cursor = load_edge_page(str(payload["edge_id"]), payload.get("cursor"), keys=keys)
        return {"subscriptions": page, "next": cursor}
    op = payload.get("op")  # what a broken caller may still send
    return {"error": {"code": "invalid_field", "message": f"unknown op {op!r}"}}
