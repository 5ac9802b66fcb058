"""Persisted list subscriptions and the watchers index (live contact lists, RFC 6665 dialogs).

A `Subscription` item holds what an edge needs to go on notifying a dialog after a restart: the
dialog state, the subscriber's list (deflated), the NOTIFY version and the owning edge.

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
from collections.abc import Iterable
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from chalicelib import clock, dynamo, tables
from chalicelib.presence.watched import Watched, watched_keys

# A watcher's pointer outlives its subscription by this margin: a phone whose dialog just ended
# (Linphone ends it to restart its list) usually subscribes again at once, and then only the
# watcher items that changed are written.
WATCHER_TTL_MARGIN = 2 * 86400
POINTER_PREFIX = "w#"
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


def _pointer(watcher: str) -> dict[str, Any] | None:
    return (
        tables.table(tables.SUBSCRIPTIONS)
        .get_item(Key={"subscription_id": POINTER_PREFIX + watcher}, ConsistentRead=True)
        .get("Item")
    )


def save(
    sub_id: str,
    *,
    edge_id: str,
    subscriber: str,
    expires_at: int,
    version: int,
    dialog: dict[str, Any],
    entries: list[str],
    watched: Iterable[Watched],
    watcher: str | None = None,
    now: float | None = None,
) -> int:
    """Create a subscription and point its watcher at it; the watcher items written."""
    now = clock.now() if now is None else now
    watcher = watcher or sub_id
    subs = tables.table(tables.SUBSCRIPTIONS)
    subs.put_item(
        Item={
            "subscription_id": sub_id,
            "edge_id": edge_id,
            "subscriber": subscriber.lower(),  # the by_subscriber index, folded like AORs
            "watcher": watcher,
            "expires_at": expires_at,
            "version": version,
            "dialog": json.dumps(dialog),
            "entries": _pack(entries),
            "updated_at": int(now),
            "created_ms": int(clock.now() * 1000),  # which dialogs a revocation ends
        }
    )
    wanted: dict[str, list[str]] = {}
    for w in watched:
        wanted.setdefault(w.key, []).append(w.uri)
    previous = _pointer(watcher)
    had: dict[str, list[str]] = json.loads(_unpack_text(previous["keys"])) if previous else {}
    written = 0
    with tables.table(tables.WATCHERS).batch_writer() as batch:
        for key, uris in wanted.items():
            if had.get(key) != uris:
                batch.put_item(
                    Item={
                        "watched": key,
                        "watcher": watcher,
                        "subscriber": subscriber,
                        "uris": uris,
                    }
                )
                written += 1
        for key in had.keys() - wanted.keys():
            batch.delete_item(Key={"watched": key, "watcher": watcher})
    subs.put_item(
        Item={
            "subscription_id": POINTER_PREFIX + watcher,
            "current": sub_id,
            "subscriber": subscriber,
            "keys": _pack_text(json.dumps(wanted)),
            "expires_at": int(expires_at + WATCHER_TTL_MARGIN),
        }
    )
    return written


def refresh(sub_id: str, *, expires_at: int, version: int, dialog: dict[str, Any]) -> bool:
    """Extend a live subscription (refresh SUBSCRIBE) or record its new version/CSeq.

    Answers False when the subscription is unknown (the edge then answers 481).
    """
    table = tables.table(tables.SUBSCRIPTIONS)
    try:
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
            ReturnValues="UPDATED_OLD",
        )["Attributes"]
    except ClientError as exc:
        if not dynamo.condition_failed(exc):
            raise
        return False
    if int(before.get("expires_at", 0)) == expires_at:
        return True  # a new version after a NOTIFY, not a refresh: the pointer stands
    item = table.get_item(Key={"subscription_id": sub_id}, ProjectionExpression="watcher").get(
        "Item"
    )
    if item and item.get("watcher"):
        try:
            table.update_item(
                Key={"subscription_id": POINTER_PREFIX + item["watcher"]},
                UpdateExpression="SET expires_at = :e",
                ConditionExpression="#c = :s",
                ExpressionAttributeNames={"#c": "current"},
                ExpressionAttributeValues={
                    ":e": int(expires_at + WATCHER_TTL_MARGIN),
                    ":s": sub_id,
                },
            )
        except ClientError as exc:
            # Refused when a newer dialog of the same phone owns the watcher now: it stands.
            if not dynamo.condition_failed(exc):
                raise
    return True


def _from_item(item: dict[str, Any], with_entries: bool = True) -> dict[str, Any]:
    out = {
        "subscription_id": item["subscription_id"],
        "edge_id": item["edge_id"],
        "subscriber": item["subscriber"],
        "expires_at": int(item["expires_at"]),
        "version": int(item["version"]),
        "dialog": json.loads(item["dialog"]),
    }
    if with_entries:
        out["entries"] = _unpack(item["entries"])
    return out


def get(sub_id: str) -> dict[str, Any] | None:
    item = (
        tables.table(tables.SUBSCRIPTIONS)
        .get_item(Key={"subscription_id": sub_id}, ConsistentRead=True)
        .get("Item")
    )
    return _from_item(item) if item else None


def delete(sub_id: str) -> None:
    """Remove a subscription (unsubscribe, expiry, 481 from the phone).

    Its watcher items stay with the watcher's pointer, which expires on its own: a phone that
    subscribes again soon (Linphone does, to change its list) reuses them.
    """
    tables.table(tables.SUBSCRIPTIONS).delete_item(Key={"subscription_id": sub_id})


def load_edge(edge_id: str, now: float | None = None) -> list[dict[str, Any]]:
    """Live subscriptions owned by one edge (its restart reloads them)."""
    now = clock.now() if now is None else now
    table = tables.table(tables.SUBSCRIPTIONS)
    out: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "IndexName": "by_edge",
        "KeyConditionExpression": Key("edge_id").eq(edge_id),
    }
    while True:
        page = table.query(**kwargs)
        ids = [i["subscription_id"] for i in page["Items"]]
        # The index holds keys only, and may lag: read each item to be exact.
        for item in dynamo.batch_get(tables.SUBSCRIPTIONS, ids).values():
            if int(item["expires_at"]) > now and item["edge_id"] == edge_id:
                out.append(_from_item(item))
        if "LastEvaluatedKey" not in page:
            return out
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def of_subscriber(
    subscriber: str, *, before_ms: int | None = None, now: float | None = None
) -> list[dict[str, Any]]:
    """The live subscriptions of one account made before `before_ms` (epoch ms; all if
    None): [{subscription_id, edge_id}]."""
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
    items = dynamo.batch_get(
        tables.SUBSCRIPTIONS, ids, projection="subscription_id, edge_id, expires_at, created_ms"
    )
    return [
        {"subscription_id": i["subscription_id"], "edge_id": i["edge_id"]}
        for i in items.values()
        if int(i["expires_at"]) > now
        and (before_ms is None or int(i.get("created_ms", 0)) < before_ms)
    ]


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
        kwargs: dict[str, Any] = {"KeyConditionExpression": Key("watched").eq(key)}
        while True:
            page = table.query(**kwargs)
            for item in page["Items"]:
                entry = found.setdefault(
                    item["watcher"],
                    {"watcher": item["watcher"], "subscriber": item["subscriber"], "uris": [],
                     "keys": []},
                )  # fmt: skip
                entry["keys"].append(key)
                entry["uris"].extend(u for u in item["uris"] if u not in entry["uris"])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
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


def _forget_watchers(gone: list[dict[str, Any]]) -> None:
    """Delete the watcher items of pointers that expired (phones that stopped subscribing)."""
    pairs = [(key, w["watcher"]) for w in gone for key in w["keys"]][:LAZY_CLEANUP_MAX]
    if not pairs:
        return
    with tables.table(tables.WATCHERS).batch_writer() as batch:
        for key, watcher in pairs:
            batch.delete_item(Key={"watched": key, "watcher": watcher})


def handle(payload: dict[str, Any]) -> dict[str, Any]:
    """The `sip_subscriptions` function: the edge's store of dialogs.

    ops: save {subscription_id, edge_id, subscriber, expires_at, version, dialog, entries},
    refresh {subscription_id, expires_at, version, dialog} -> {"found": bool},
    delete {subscription_id}, load_edge {edge_id} -> {"subscriptions": [...]}.
    """
    op = payload.get("op")
    if op == "save":
        entries = list(payload["entries"])
        save(
            str(payload["subscription_id"]),
            edge_id=str(payload["edge_id"]),
            subscriber=str(payload["subscriber"]),
            expires_at=int(payload["expires_at"]),
            version=int(payload["version"]),
            dialog=dict(payload["dialog"]),
            entries=entries,
            watched=watched_keys(entries, str(payload["subscriber"])),
            watcher=payload.get("watcher"),
        )
        return {"saved": True}
    if op == "refresh":
        found = refresh(
            str(payload["subscription_id"]),
            expires_at=int(payload["expires_at"]),
            version=int(payload["version"]),
            dialog=dict(payload["dialog"]),
        )
        return {"found": found}
    if op == "delete":
        delete(str(payload["subscription_id"]))
        return {"deleted": True}
    if op == "load_edge":
        return {"subscriptions": load_edge(str(payload["edge_id"]))}
    return {"error": {"code": "invalid_field", "message": f"unknown op {op!r}"}}
