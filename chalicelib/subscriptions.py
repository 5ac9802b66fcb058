"""Persisted list subscriptions and the watchers index (live contact lists, RFC 6665 dialogs).

A `Subscription` item holds what an edge needs to go on notifying a dialog after a restart: the
dialog state, the subscriber's list (deflated), the NOTIFY version and the owning edge. The
watchers index maps what a list watches — `p#<phone hash>` for numbers, `u#<aor>` for SIP
accounts — to the subscriptions that watch it, so a change to one account finds its watchers
with one Query per key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Key

from chalicelib import dynamo, phone, tables

# Watchers outlive a subscription's expiry by this margin so that refreshes (every ~hour)
# need not rewrite thousands of watcher items; the handler checks that the subscription lives.
WATCHER_TTL_MARGIN = 2 * 86400


def subscription_id(call_id: str, local_tag: str) -> str:
    return hashlib.sha256(f"{call_id}\x00{local_tag}".encode()).hexdigest()[:32]


def phone_key(e164: str) -> str:
    return "p#" + phone.phone_hash(e164)


def account_key(aor: str) -> str:
    return "u#" + aor.lower()


@dataclass(frozen=True)
class Watched:
    """One resource of a list as the watchers index sees it."""

    uri: str  # the subscriber's own string, byte for byte
    key: str  # p#<hash> or u#<aor>


def _pack(entries: list[str]) -> str:
    return base64.b64encode(zlib.compress(json.dumps(entries).encode(), 6)).decode()


def _unpack(blob: str) -> list[str]:
    return json.loads(zlib.decompress(base64.b64decode(blob)))


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
    now: float | None = None,
) -> None:
    """Create or replace a subscription and its watchers."""
    now = time.time() if now is None else now
    tables.table(tables.SUBSCRIPTIONS).put_item(
        Item={
            "subscription_id": sub_id,
            "edge_id": edge_id,
            "subscriber": subscriber,
            "expires_at": expires_at,
            "version": version,
            "dialog": json.dumps(dialog),
            "entries": _pack(entries),
            "watchers_until": int(expires_at + WATCHER_TTL_MARGIN),
            "updated_at": int(now),
        }
    )
    by_key: dict[str, list[str]] = {}
    for w in watched:
        by_key.setdefault(w.key, []).append(w.uri)
    with tables.table(tables.WATCHERS).batch_writer() as batch:
        for key, uris in by_key.items():
            batch.put_item(
                Item={
                    "watched": key,
                    "subscription_id": sub_id,
                    "edge_id": edge_id,
                    "subscriber": subscriber,
                    "uris": uris,
                    "expires_at": int(expires_at + WATCHER_TTL_MARGIN),
                }
            )


def refresh(sub_id: str, *, expires_at: int, version: int, dialog: dict[str, Any]) -> bool:
    """Extend a live subscription (refresh SUBSCRIBE) or record its new version/CSeq.

    Answers False when the subscription is unknown (the edge then answers 481).
    """
    table = tables.table(tables.SUBSCRIPTIONS)
    try:
        table.update_item(
            Key={"subscription_id": sub_id},
            UpdateExpression="SET expires_at = :e, version = :v, dialog = :d, updated_at = :n",
            ConditionExpression="attribute_exists(subscription_id)",
            ExpressionAttributeValues={
                ":e": expires_at,
                ":v": version,
                ":d": json.dumps(dialog),
                ":n": int(time.time()),
            },
        )
    except tables.table(
        tables.SUBSCRIPTIONS
    ).meta.client.exceptions.ConditionalCheckFailedException:
        return False
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
    """Remove a subscription and its watchers (unsubscribe, expiry, 481 from the phone)."""
    item = get(sub_id)
    tables.table(tables.SUBSCRIPTIONS).delete_item(Key={"subscription_id": sub_id})
    if not item:
        return
    keys = {w.key for w in watched_of(item["entries"], item["subscriber"])}
    with tables.table(tables.WATCHERS).batch_writer() as batch:
        for key in keys:
            batch.delete_item(Key={"watched": key, "subscription_id": sub_id})


def watched_of(entries: list[str], subscriber: str) -> list[Watched]:
    """Classify list entries into watcher keys with the presence module's own rules."""
    from chalicelib import presence

    return presence.watched_keys(entries, subscriber)


def load_edge(edge_id: str, now: float | None = None) -> list[dict[str, Any]]:
    """Live subscriptions owned by one edge (its restart reloads them)."""
    now = time.time() if now is None else now
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


def watchers(keys: Iterable[str], now: float | None = None) -> list[dict[str, Any]]:
    """Subscriptions watching any of `keys`, live ones only, with the matching URIs."""
    now = time.time() if now is None else now
    table = tables.table(tables.WATCHERS)
    found: dict[str, dict[str, Any]] = {}
    for key in set(keys):
        kwargs: dict[str, Any] = {"KeyConditionExpression": Key("watched").eq(key)}
        while True:
            page = table.query(**kwargs)
            for item in page["Items"]:
                entry = found.setdefault(
                    item["subscription_id"],
                    {
                        "subscription_id": item["subscription_id"],
                        "edge_id": item["edge_id"],
                        "subscriber": item["subscriber"],
                        "uris": [],
                    },
                )
                entry["uris"].extend(u for u in item["uris"] if u not in entry["uris"])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    if not found:
        return []
    live = dynamo.batch_get(
        tables.SUBSCRIPTIONS, found, projection="subscription_id, expires_at, edge_id"
    )
    return [
        {**w, "edge_id": live[s]["edge_id"]}
        for s, w in found.items()
        if s in live and int(live[s]["expires_at"]) > now
    ]


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
            watched=watched_of(entries, str(payload["subscriber"])),
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
