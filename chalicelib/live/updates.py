"""Live contact lists: DynamoDB stream records in, "look again" messages to the edges out.

A change to an account, a phone-index entry, a registration or a publication names watcher keys
(`p#<phone hash>`, `u#<aor>`); the watchers index gives the subscriptions that watch them and
the edge that holds each dialog. Each edge gets, on its own SQS queue, the subscription and the
resource URIs to look at again. The edge then asks `presence_lookup` for their current state and
sends a partial NOTIFY only when something the phone sees changed; so a record replayed twice,
out of order, or for a subscription that is gone changes nothing wrongly.

An account disabled, deleted or whose sessions were revoked (recovery, new password) also has
its registrations deleted and its own dialogs ended: each edge holding one gets a `revoke`
message (`edge_contract.Revocation`) and sends the final NOTIFY.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any, Literal

from chalicelib import accounts, dynamo, edge_contract, tables
from chalicelib.accounts import sessions
from chalicelib.aws import client
from chalicelib.live import registrar, subscriptions
from chalicelib.observability import flush_metrics, logger, metrics, pseudonym
from chalicelib.presence import watched

STREAMED = (tables.ACCOUNTS, tables.PHONE_INDEX, tables.REGISTRATIONS, tables.PUBLICATIONS)
_ACCOUNT_FIELDS = ("discoverable", "disabled")  # what decides how its SIP URI resolves


@cache
def queue_url(edge_id: str) -> str:
    return client("sqs").get_queue_url(QueueName=edge_contract.queue_name(edge_id))["QueueUrl"]


def _image(record: dict[str, Any], name: str) -> dict[str, Any]:
    raw = record.get("dynamodb", {}).get(name)
    return dynamo.from_item(raw) if raw else {}


def _table_of(record: dict[str, Any]) -> tables.TableSpec | None:
    arn = record.get("eventSourceARN", "")
    table = arn.split(":table/", 1)[-1].split("/", 1)[0]
    return next((spec for spec in STREAMED if spec.name() == table), None)


def _account_keys(aor: str) -> set[str]:
    keys = {watched.account_key(aor)}
    account = accounts.get(aor)
    if account is not None and account.phone:
        keys.add(watched.phone_key(account.phone))
    return keys


def watch_keys(record: dict[str, Any]) -> set[str]:
    """Watcher keys whose resources may look different after this record."""
    spec = _table_of(record)
    keys = _image(record, "Keys")
    old, new = _image(record, "OldImage"), _image(record, "NewImage")
    event = record.get("eventName")
    if spec is tables.PHONE_INDEX:
        if event == "MODIFY" and all(old.get(f) == new.get(f) for f in ("aor", "discoverable")):
            return set()
        return {"p#" + keys["phone_hash"]}
    if spec is tables.ACCOUNTS:
        if event == "MODIFY" and all(old.get(f) == new.get(f) for f in _ACCOUNT_FIELDS):
            return set()
        # The account as a SIP URI only. How its number resolves (linked, discoverable,
        # disabled, gone) lives in its PhoneIndex item, rewritten in the same transaction, whose
        # own record names the number: naming it here too sent every list holding it a second
        # look-again (two messages and two lookups per watching phone at each sign-up).
        return {watched.account_key(keys["aor"])}
    if spec in (tables.REGISTRATIONS, tables.PUBLICATIONS):
        if spec is tables.REGISTRATIONS and event == "MODIFY":
            return set()  # a refreshed binding: online before and after
        return _account_keys(keys["aor"])
    return set()


Reason = Literal["rejected", "deactivated"]


def revocation(record: dict[str, Any]) -> tuple[str, Reason, int | None] | None:
    """(AOR, reason, before_ms) when this record ends an account's sessions: deleted or
    disabled ("rejected": do not subscribe again; every session), or its credentials replaced
    by a recovery or a new password ("deactivated": the sessions made before then; new ones,
    signed in with the new credentials, may already be running)."""
    if _table_of(record) is not tables.ACCOUNTS:
        return None
    aor = _image(record, "Keys").get("aor")
    old, new = _image(record, "OldImage"), _image(record, "NewImage")
    event = record.get("eventName")
    if not aor or event == "INSERT":
        return None
    if event == "REMOVE" or (new.get("disabled") and not old.get("disabled")):
        return str(aor), "rejected", None
    revoked_at = int(new.get("revoked_at", 0) or 0)
    if revoked_at > int(old.get("revoked_at", 0) or 0):
        return str(aor), "deactivated", revoked_at
    return None


def revoke(aor: str, reason: Reason, before_ms: int | None = None) -> tuple[int, int]:
    """End what an account had signed in: its registrations (deleted here; their stream then
    tells its watchers it is offline), its web sessions, and its subscription dialogs (each
    holding edge gets a `revoke` message and sends the final NOTIFY). Answers the messages SQS
    took and refused."""
    removed = registrar.remove_all(aor, before_ms=before_ms)
    web = sessions.end_all(aor, before_ms=before_ms)
    edges, sent, failed = end_dialogs(
        aor, reason, subscriptions.of_subscriber(aor, before_ms=before_ms)
    )
    metrics.add_metric(name="Revocations", unit="Count", value=1)
    logger.info(
        "sessions revoked",
        extra={
            "aor": pseudonym(aor),
            "bindings": removed,
            "web_sessions": web,
            "edges": edges,
            "reason": reason,
        },
    )
    return sent, failed


def end_dialogs(
    aor: str, reason: Reason, dialogs: Iterable[dict[str, Any]]
) -> tuple[int, int, int]:
    """Have the edges holding `dialogs` ({subscription_id, edge_id}, subscriptions of `aor`)
    end them with a final NOTIFY `terminated;reason=<reason>`. Answers (edges told, messages
    SQS took, messages it refused)."""
    by_edge: dict[str, list[str]] = {}
    for sub in dialogs:
        by_edge.setdefault(sub["edge_id"], []).append(sub["subscription_id"])
    sent = failed = 0
    for edge_id, ids in by_edge.items():
        message: edge_contract.Revocation = {
            "kind": "revoke",
            "subscriber": aor,
            "reason": reason,
            "subscription_ids": ids,
        }
        ok, bad = _send(edge_id, [message])
        sent, failed = sent + ok, failed + bad
    return len(by_edge), sent, failed


def handle_records(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The stream handler: end revoked accounts' sessions, then tell each edge which of its
    subscriptions to look at again.

    When SQS refuses part of what is sent, the answer's `batchItemFailures` names the batch's
    first record, so Lambda (`ReportBatchItemFailures`) delivers the whole batch again: the
    records are idempotent for the edges (a revocation found again ends nothing more), and a
    stream keeps them 24 hours.
    """
    records = list(records)
    keys: set[str] = set()
    revoked = revoke_failed = 0
    for record in records:
        keys |= watch_keys(record)
        ended = revocation(record)
        if ended is not None:
            ok, bad = revoke(*ended)
            revoked, revoke_failed = revoked + ok, revoke_failed + bad
    answer = _look_again(keys)
    if revoked and not keys:
        flush_metrics()
    failed = answer["failed"] + revoke_failed
    return {
        "subscriptions": answer["subscriptions"],
        "messages": answer["messages"] + revoked,
        "batchItemFailures": _retry_from(records) if failed else [],
    }


def subscription_saved(keys: frozenset[str]) -> dict[str, int]:
    """A new list subscription of a subscriber: the lists that watch it (`keys`, its watcher
    keys, read with the save: `subscriptions.Saved`) look at it again.

    The mutual-contacts rule gives them its detailed status once its own list watches them,
    and a phone subscribes after it registers: without this, a contact that registered before
    subscribing would stay "a user, no status" to the others until its next change. A
    subscriber with no account has no keys: no list shows it as a user, so none is told. Best
    effort: the subscription stands if the edges cannot be told.
    """
    try:
        return _look_again(set(keys))
    except Exception:
        logger.exception("could not tell the watchers of a new subscriber to look again")
        return {"subscriptions": 0, "messages": 0, "failed": 0}


def _look_again(keys: set[str]) -> dict[str, int]:
    """Tell the edge of every subscription watching `keys` to look again at those resources."""
    if not keys:
        return {"subscriptions": 0, "messages": 0, "failed": 0}
    by_edge: dict[str, list[edge_contract.LiveUpdate]] = {}
    for watcher in subscriptions.watchers(keys, cleanup=True):
        by_edge.setdefault(watcher["edge_id"], []).append(
            {"subscription_id": watcher["subscription_id"], "uris": watcher["uris"]}
        )
    sent = failed = 0
    for edge_id, changes in by_edge.items():
        ok, bad = _send(edge_id, changes)
        sent, failed = sent + ok, failed + bad
    metrics.add_metric(name="LiveUpdates", unit="Count", value=sent)
    if failed:
        metrics.add_metric(name="LiveUpdatesFailed", unit="Count", value=failed)
    flush_metrics()
    logger.info("live update", extra={"keys": len(keys), "messages": sent, "failed": failed})
    return {
        "subscriptions": sum(len(c) for c in by_edge.values()),
        "messages": sent,
        "failed": failed,
    }


def _retry_from(records: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Lambda restarts a stream batch at its lowest failed sequence number: the first one."""
    first = records[0].get("dynamodb", {}).get("SequenceNumber", "") if records else ""
    return [{"itemIdentifier": first}]


def _send(
    edge_id: str, changes: Sequence[edge_contract.LiveUpdate | edge_contract.Revocation]
) -> tuple[int, int]:
    """Send the changes to an edge's queue: how many SQS took and how many it refused."""
    try:
        url = queue_url(edge_id)
    except client("sqs").exceptions.QueueDoesNotExist:
        logger.info("edge queue gone; its subscriptions will be reloaded elsewhere")
        return 0, 0
    sent = failed = 0
    for start in range(0, len(changes), 10):
        batch = changes[start : start + 10]
        answer = client("sqs").send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "MessageBody": json.dumps(change)} for i, change in enumerate(batch)
            ],
        )
        refused = answer.get("Failed") or []
        for entry in refused:
            logger.warning(
                "SQS refused a live update",
                extra={
                    "edge_id": edge_id,
                    "code": entry.get("Code"),
                    "sender": entry.get("SenderFault"),
                },
            )
        failed += len(refused)
        sent += len(batch) - len(refused)
    return sent, failed
