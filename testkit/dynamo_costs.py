"""DynamoDB calls and capacity units per operation, counted by a botocore event hook.

moto answers every request with a fixed ConsumedCapacity, so the meter computes the units
itself, by DynamoDB's published rules, from the items each request touches (read through a
client of its own, not hooked): a write costs 1 WRU per started KiB of the larger of the item
before and after (1 more per index item written or deleted), a strongly consistent read 1 RCU
per started 4 KiB of the whole item (projections do not reduce it; an eventually consistent
read half that), a Query the sum of the items read, rounded up once. docs/cost.md's table is
rendered from `measure()`; `python -m testkit.dynamo_costs` rewrites it, a test keeps it current.
"""

from __future__ import annotations

import base64
import json
import math
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3

COST_PAGE = Path(__file__).resolve().parent.parent / "docs" / "cost.md"
START, END = "<!-- dynamo-costs:start -->", "<!-- dynamo-costs:end -->"


def attribute_size(value: dict[str, Any]) -> int:
    """Bytes DynamoDB counts for one typed value (DynamoDB JSON)."""
    ((kind, v),) = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        digits = len(Decimal(v).normalize().as_tuple().digits)  # the significant ones
        return math.ceil(digits / 2) + 1
    if kind == "B":
        return len(base64.b64decode(v)) if isinstance(v, str) else len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_size({kind[0]: x}) for x in v)
    if kind == "L":
        return 3 + sum(1 + attribute_size(x) for x in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + attribute_size(x) for k, x in v.items())
    raise ValueError(f"unknown DynamoDB type {kind}")


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + attribute_size(v) for name, v in item.items())


@dataclass
class Usage:
    calls: Counter[str] = field(default_factory=Counter)
    rcu: float = 0.0
    wcu: float = 0.0


class CostMeter:
    """Hooks the app's DynamoDB clients; `usage` grows with every request they make."""

    WRITES = ("PutItem", "UpdateItem", "DeleteItem")

    def __init__(self, clients: list[Any]) -> None:
        self.usage = Usage()
        self._peek = boto3.session.Session().client(
            "dynamodb", region_name=clients[0].meta.region_name
        )
        self._schemas: dict[str, dict[str, Any]] = {}
        self._local = threading.local()  # requests in flight, per thread (batch gets fan out)
        for c in clients:
            # First: the local stack's direct route to moto answers at `before-call` too; and
            # ahead of boto3's resource transformation, which makes an answer's items plain
            # Python values (a resource made before the meter has it registered already).
            c.meta.events.register_first("before-call.dynamodb", self._before)
            c.meta.events.register_first("after-call.dynamodb", self._after)

    def reset(self) -> Usage:
        used, self.usage = self.usage, Usage()
        return used

    # --- table shapes ----------------------------------------------------------------------

    def _schema(self, table: str) -> dict[str, Any]:
        if table not in self._schemas:
            desc = self._peek.describe_table(TableName=table)["Table"]
            self._schemas[table] = {
                "key": [k["AttributeName"] for k in desc["KeySchema"]],
                "indexes": [
                    ([k["AttributeName"] for k in i["KeySchema"]], i["Projection"])
                    for i in desc.get("GlobalSecondaryIndexes", [])
                ],
            }
        return self._schemas[table]

    def _key(self, table: str, item: dict[str, Any]) -> dict[str, Any]:
        return {k: item[k] for k in self._schema(table)["key"]}

    def _read(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        return self._peek.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")

    def _index_writes(self, table: str, old: dict | None, new: dict | None) -> int:
        writes = 0
        for keys, projection in self._schema(table)["indexes"]:
            had = old is not None and all(k in old for k in keys)
            has = new is not None and all(k in new for k in keys)
            if (
                old is not None
                and new is not None
                and had
                and has
                and all(old[k] == new[k] for k in keys)
            ):
                if projection["ProjectionType"] == "KEYS_ONLY" or old == new:
                    continue
                writes += math.ceil(item_size(new) / 1024)
                continue
            writes += int(had) + int(has)  # a key change deletes one index item, writes one
        return writes

    def _write_units(self, table: str, old: dict | None, new: dict | None) -> float:
        size = max(item_size(old), item_size(new))
        return max(1, math.ceil(size / 1024)) + self._index_writes(table, old, new)

    @staticmethod
    def _read_units(size: int, consistent: bool) -> float:
        return max(1, math.ceil(size / 4096)) * (1 if consistent else 0.5)

    def _pending(self) -> list[tuple[str, dict[str, Any], list[Any]]]:
        return self._local.__dict__.setdefault("stack", [])

    # --- hooks -----------------------------------------------------------------------------

    def _before(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        op, body = model.name, json.loads(params["body"] or b"{}")
        self.usage.calls[op] += 1
        touched: list[tuple[str, dict, int]] = []  # (table, key, size before)
        if op in self.WRITES:
            table = body["TableName"]
            key = body["Key"] if "Key" in body else self._key(table, body["Item"])
            touched.append((table, key, 0))
        elif op == "BatchWriteItem":
            for table, requests in body["RequestItems"].items():
                for r in requests:
                    key = (
                        r["DeleteRequest"]["Key"]
                        if "DeleteRequest" in r
                        else self._key(table, r["PutRequest"]["Item"])
                    )
                    touched.append((table, key, 0))
        olds = [(t, k, self._read(t, k)) for t, k, _ in touched]
        self._pending().append((op, body, olds))

    def _after(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        op, body, olds = self._pending().pop()
        if op in self.WRITES or op == "BatchWriteItem":
            unprocessed = parsed.get("UnprocessedItems") or {}
            for table, key, old in olds:
                if any(
                    key == (r.get("DeleteRequest", {}).get("Key") or self._key(table, r.get(
                        "PutRequest", {}).get("Item", {})))
                    for r in unprocessed.get(table, [])
                ):  # fmt: skip
                    continue
                new = self._read(table, key)
                self.usage.wcu += self._write_units(table, old, new)
        elif op == "GetItem":
            full = self._read(body["TableName"], body["Key"])
            self.usage.rcu += self._read_units(item_size(full), bool(body.get("ConsistentRead")))
        elif op == "BatchGetItem":
            for table, spec in body["RequestItems"].items():
                for key in spec["Keys"]:
                    size = item_size(self._read(table, key))
                    self.usage.rcu += self._read_units(size, bool(spec.get("ConsistentRead")))
        elif op in ("Query", "Scan"):
            items = parsed.get("Items", [])
            table = body["TableName"]
            if "IndexName" not in body and ("ProjectionExpression" in body or "Select" in body):
                items = [self._read(table, self._key(table, i)) or {} for i in items]
            size = sum(item_size(i) for i in items)
            self.usage.rcu += self._read_units(size, bool(body.get("ConsistentRead")))
        elif op == "TransactWriteItems":
            self.usage.wcu += 2 * len(body["TransactItems"])  # sizes not followed: rare path


# --- the operations of a subscription's life ---------------------------------------------

NOW_EXPIRES = 3600
LIST_SIZE = 100


def _dialog(call_id: str) -> dict[str, Any]:
    """A dialog as the edge stores it (SubscriptionDialog.to_record of a Linphone SUBSCRIBE)."""
    return {
        "schema": 2,
        "subscription_id": f"{call_id}~a1b2c3d4e5f6",
        "call_id": call_id,
        "local_tag": "a1b2c3d4e5f6",
        "remote_tag": "2079476823",
        "local_uri": "<sip:rls@example.org>",
        "remote_uri": '"Alice" <sip:alice@example.org>',
        "remote_target": "sip:alice@192.0.2.10:5060;transport=udp",
        "route_set": [],
        "subscriber": "alice@example.org",
        "peer": {"transport": "udp", "host": "192.0.2.10", "port": 5060, "connection": None},
        "expires_at": 1_800_003_600.0,
        "event_id": None,
        "profile": "linphone",
        "accept_deflate": True,
        "is_list": True,
        "device": '"<urn:uuid:2d1b3c6e-0b7c-4e8e-9a55-5f0a0e3e1b11>"',
        "user_agent": "LinphoneAndroid/4.6.14 (belle-sip/4.6.3)",
        "remote_cseq": 20,
        "local_cseq": 1,
        "version": 1,
        "synced": False,
    }


def list_entries(n: int) -> list[str]:
    return [
        f"sip:user{i}@example.org" if i % 10 == 9 else f"sip:+336{i:08d}@example.org;user=phone"
        for i in range(n)
    ]


def seed(app: Any) -> None:
    """alice (the subscriber: an account with its number, as a phone's user is), bob (a user
    who PUBLISHed) and users among the list's entries (30%, as bench bodies)."""
    from chalicelib import accounts, tables
    from chalicelib.accounts import phone

    for name, number in (("alice", "+33612345678"), ("bob", None)):
        credentials = accounts.credentials_from_password(name, f"{name} password", "example.org")
        accounts.create(name, credentials, phone_e164=number)
    pidf = (
        '<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" '
        'entity="sip:bob@example.org"><tuple id="t1"><status><basic>open</basic></status>'
        "</tuple></presence>"
    )
    app.sip_publish(
        {"op": "publish", "call_id": "c1", "cseq": 1, "aor": "bob@example.org",
         "if_match": None, "expires": 3600, "body_b64": base64.b64encode(pidf.encode()).decode()},
        None,
    )  # fmt: skip
    for i in range(LIST_SIZE):
        if i % 10 in (0, 4):
            tables.table(tables.PHONE_INDEX).put_item(
                Item={"phone_hash": phone.phone_hash(f"+336{i:08d}"), "aor": f"u{i}@example.org",
                      "discoverable": True}
            )  # fmt: skip
        elif i % 10 == 9:
            tables.table(tables.ACCOUNTS).put_item(
                Item={"aor": f"user{i}@example.org", "discoverable": True, "disabled": False}
            )


def measure() -> list[tuple[str, Usage]]:
    """Each operation of a subscription's life through the functions, as the edge calls them.

    Runs inside moto (the caller's `mock_aws`); the app's clients must be fresh."""
    import app
    from chalicelib import aws, clock

    meter = CostMeter([aws.client("dynamodb"), aws.resource("dynamodb").meta.client])
    seed(app)
    now = clock.now_int()
    rows: list[tuple[str, Usage]] = []

    def op(name: str, function: Any, payload: dict[str, Any]) -> dict[str, Any]:
        meter.reset()
        answer = function(payload, None)
        assert "error" not in answer, answer
        rows.append((name, meter.reset()))
        return answer

    lookup = {"subscriber": "alice@example.org", "profile": "linphone", "version": 0,
              "accept_encoding": ["deflate"]}  # fmt: skip
    op("SUBSCRIBE (one number, not a user): presence_lookup", app.presence_lookup,
       {**lookup, "entries": ["sip:+33699999999@example.org;user=phone"], "single": True,
        "list_uri": "sip:+33699999999@example.org;user=phone"})  # fmt: skip
    for label, extra, sub, watcher in (
        ("one user", {"entries": ["sip:bob@example.org"], "single": True,
                      "list_uri": "sip:bob@example.org"}, "s1", "alice~phone1"),
        (f"list of {LIST_SIZE}", {"list_uri": "sip:rls@example.org", "list_b64": base64.b64encode(
            _list_body(LIST_SIZE)).decode(), "content_encoding": None}, "s2", "alice~phone2"),
    ):  # fmt: skip
        found = op(f"SUBSCRIBE ({label}): presence_lookup", app.presence_lookup,
                   {**lookup, **extra})  # fmt: skip
        save = {"subscription_id": sub, "expires_at": now + NOW_EXPIRES, "version": 0,
                "dialog": _dialog(sub), "edge_id": "edge-1", "subscriber": "alice@example.org",
                "entries": found["entries"], "watcher": watcher}  # fmt: skip
        op(f"SUBSCRIBE ({label}): save the new dialog", app.sip_subscriptions,
           {"op": "save", **save})  # fmt: skip
        version = {"op": "refresh", "subscription_id": sub, "expires_at": now + NOW_EXPIRES,
                   "version": 1, "dialog": _dialog(sub)}  # fmt: skip
        op(f"NOTIFY of a later change ({label}): record the version", app.sip_subscriptions,
           version)  # fmt: skip
        refreshed = {**version, "expires_at": now + 2 * NOW_EXPIRES}
        op(f"refresh SUBSCRIBE ({label})", app.sip_subscriptions, refreshed)
        renewed = {**version, "expires_at": now + 2 * 86400}
        op(f"refresh SUBSCRIBE ({label}), once a day: pointer and list kept longer",
           app.sip_subscriptions, renewed)  # fmt: skip
        op(f"un-SUBSCRIBE ({label}): delete", app.sip_subscriptions,
           {"op": "delete", "subscription_id": sub})  # fmt: skip
    return rows


def _list_body(n: int) -> bytes:
    entries = "".join(f'<entry uri="{e}"/>' for e in list_entries(n))
    return (
        '<?xml version="1.0" encoding="UTF-8"?><resource-lists xmlns="urn:ietf:params:xml:ns:'
        f'resource-lists"><list>{entries}</list></resource-lists>'
    ).encode()


def render(rows: list[tuple[str, Usage]]) -> str:
    lines = [
        START,
        "| operation (function call from the edge) | DynamoDB calls | read units | write units |",
        "|---|---|---:|---:|",
    ]
    for name, used in rows:
        calls = ", ".join(f"{n} {op}" for op, n in sorted(used.calls.items())) or "none"
        lines.append(f"| {name} | {calls} | {used.rcu:g} | {used.wcu:g} |")
    lines.append(END)
    return "\n".join(lines)


def cost_page_block() -> str:
    text = COST_PAGE.read_text()
    return text[text.index(START) : text.index(END) + len(END)]


def main() -> int:
    import os

    from moto import mock_aws

    from chalicelib import aws, settings
    from testkit.env import TEST_ENV

    for key, value in TEST_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    with mock_aws():
        from chalicelib import tables
        from chalicelib.aws import client

        settings.get.cache_clear()
        aws.reset()
        tables.create_all(client("dynamodb"))
        block = render(measure())
    text = COST_PAGE.read_text()
    COST_PAGE.write_text(text.replace(cost_page_block(), block))
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
