"""The stored dialog is a versioned record: what every earlier edge stored still reloads, and
what this one stores reads back the same."""

from __future__ import annotations

import json

import pytest

from sip_edge.dialog import DialogState, Peer, SubscriptionDialog
from sip_edge.presence import record

PEER = {"transport": "udp", "host": "192.0.2.10", "port": 5060, "connection": None}

#: Version 0 as the first edges stored it: the dataclass's fields (`asdict`), entries beside it.
VERSION_0_FIRST = {
    "subscription_id": "0f3a", "call_id": "c1", "local_tag": "lt", "remote_tag": "rt",
    "local_uri": "<sip:rls@example.org>", "remote_uri": '"Alice" <sip:alice@example.org>',
    "remote_target": "sip:alice@192.0.2.10:5060", "route_set": ["<sip:proxy.example.org;lr>"],
    "subscriber": "alice@example.org", "peer": PEER, "expires_at": 1_800_003_600.0,
    "event_id": None, "profile": "linphone", "accept_deflate": True, "is_list": True,
    "version": 3, "local_cseq": 4312, "remote_cseq": 20, "terminated": False,
}  # fmt: skip
#: Version 0 once watchers belonged to a phone: `device` added.
VERSION_0_DEVICE = {**VERSION_0_FIRST, "device": '"<urn:uuid:2d1b3c6e>"', "version": 0}
#: Version 1: `synced` added (the phone answered a full state before this write).
VERSION_1 = {**VERSION_0_DEVICE, "version": 2, "synced": True}
#: Version 1 once the account's devices list showed each phone's User-Agent.
VERSION_1_AGENT = {**VERSION_1, "user_agent": "LinphoneAndroid/4.6.14 (belle-sip/4.6.3)"}


def current(**fields: object) -> SubscriptionDialog:
    base = dict(
        subscription_id="s", call_id="c", local_tag="lt", remote_tag="rt",
        local_uri="<sip:rls@example.org>", remote_uri="<sip:alice@example.org>",
        remote_target="sip:alice@192.0.2.1", route_set=["<sip:p.example.org;lr>"],
        subscriber="alice@example.org", peer=Peer("udp", "192.0.2.1", 5060), expires_at=12.0,
        device="d", version=5, local_cseq=77, remote_cseq=3,
    )  # fmt: skip
    return SubscriptionDialog(**{**base, **fields})  # type: ignore[arg-type]


def test_what_is_stored_now_reads_back_the_same_through_json():
    d = current(synced=True, event_id="x", profile="linphone", accept_deflate=True)
    d.state = DialogState.OWES_FULL_STATE  # the edge's own: never stored
    stored = json.loads(json.dumps(d.to_record()))
    assert stored["schema"] == record.SCHEMA == 2
    assert set(stored) == set(record.FIELDS)
    assert "resync" not in stored and "synced_stored" not in stored and "terminated" not in stored
    assert record.read(stored) == stored
    again = SubscriptionDialog.from_record(record.read(stored), [], inline_limit=None)
    assert again.to_record() == d.to_record()
    assert again.synced and again.synced_stored and again.state is DialogState.ACTIVE


@pytest.mark.parametrize(
    ("stored", "synced", "device"),
    [
        (VERSION_0_FIRST, True, ""),  # written again once its first NOTIFY went: version > 0
        (VERSION_0_DEVICE, False, '"<urn:uuid:2d1b3c6e>"'),
        (VERSION_1, True, '"<urn:uuid:2d1b3c6e>"'),
        (VERSION_1_AGENT, True, '"<urn:uuid:2d1b3c6e>"'),
    ],
    ids=["0-first", "0-device", "1", "1-user-agent"],
)
def test_every_older_version_reads_as_the_current_one(stored, synced, device):
    assert record.schema_of(stored) == (1 if "synced" in stored else 0)
    now = record.read(json.loads(json.dumps(stored)))
    assert now is not None and now["schema"] == record.SCHEMA
    assert set(now) == set(record.FIELDS)
    assert now["synced"] is synced and now["device"] == device
    assert now["user_agent"] == stored.get("user_agent", "")
    dialog = SubscriptionDialog.from_record(now, ["sip:bob@example.org"], inline_limit=None)
    assert dialog.local_cseq == stored["local_cseq"] and dialog.version == stored["version"]
    assert dialog.route_set == stored["route_set"] and dialog.peer == Peer(
        "udp", "192.0.2.10", 5060
    )
    assert dialog.entries == ["sip:bob@example.org"] and dialog.synced_stored is synced


def test_an_older_record_of_an_ended_dialog_is_nothing_to_resume():
    assert record.read({**VERSION_1, "terminated": True}) is None
    assert record.read({**VERSION_0_FIRST, "terminated": True}) is None


def test_lists_once_stored_inside_the_dialog_are_left_out():
    assert "entries" not in record.read({**VERSION_0_FIRST, "entries": ["sip:a@x"]})


def test_a_record_newer_than_this_edge_or_short_of_a_field_is_refused():
    with pytest.raises(ValueError, match="newer"):
        record.read({**VERSION_1, "schema": record.SCHEMA + 1})
    broken = {k: v for k, v in current().to_record().items() if k != "call_id"}
    with pytest.raises(ValueError, match="call_id"):
        record.read(broken)


def test_each_version_has_its_migration():
    assert sorted(record.MIGRATIONS) == list(range(record.SCHEMA))
