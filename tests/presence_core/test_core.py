"""The presence core alone, in milliseconds: every guarantee the edge gives its subscription
dialogs, shown on events and actions with a hand-moved clock (the real-socket tests in
tests/edge show the same through a running edge)."""

from __future__ import annotations

import pytest

from sip_edge.dialog import DialogState
from sip_edge.handling import Reject
from sip_edge.presence.actions import (
    Ack,
    Delete,
    Lookup,
    Opening,
    Release,
    Reply,
    SendNotify,
    Store,
)
from tests.presence_core.harness import (
    ALICE,
    BOB,
    CAROL,
    DAN,
    ENTRIES,
    PHONE,
    REFUSED,
    Clock,
    acked,
    active_dialog,
    answer,
    make_core,
    of,
    only,
    open_dialog,
    resource,
    settle,
    state_of,
    subscribe_request,
    users,
)

# --- a new SUBSCRIBE --------------------------------------------------------------------------


def test_a_new_dialog_is_written_once_as_its_first_notify_will_leave_it_then_notified():
    core = make_core()
    dialog, reply = open_dialog(core)
    assert reply.response.status == 200 and reply.response.to.tag == dialog.local_tag
    assert reply.response.headers.get("Require") == "eventlist"
    save = only(Store, reply.then)  # nothing goes before the write: a change finds the dialog
    assert save.payload["op"] == "save" and save.payload["entries"] == ENTRIES
    stored = save.payload["dialog"]
    assert stored["synced"] is False and stored["version"] == 1 == save.payload["version"]
    notify = only(SendNotify, core.stored(save, True))
    assert notify.request.cseq.seq == stored["local_cseq"]  # the write knew its CSeq
    assert state_of(notify.request).startswith("active;expires=600")
    assert notify.request.headers.get("Event") == "Presence"  # Linphone's spelling
    assert core.notified(notify, 200) == [] and dialog.synced and not dialog.synced_stored


def test_a_fetch_gets_one_final_notify_and_is_never_stored():
    core = make_core()
    dialog, reply = open_dialog(core, expires=0)
    notify = only(SendNotify, reply.then)
    assert not of(Store, reply.then) and notify.final
    assert state_of(notify.request) == "terminated;reason=timeout"
    assert core.notified(notify, 200) == []  # no delete: it was never stored
    assert dialog.state is DialogState.TERMINATED and not core.dialogs


def test_a_refused_lookup_answers_the_subscribe_with_its_status_and_keeps_nothing():
    core = make_core()
    opening = core.subscribe(subscribe_request(entries=ENTRIES), PHONE, ALICE)
    assert isinstance(opening, Opening)
    with pytest.raises(Reject) as refused:
        core.opened(opening, {"error": {"code": "list_too_large", "message": "big"}})
    assert refused.value.status == 413 and not core.dialogs


def test_the_dialogs_of_one_account_are_capped():
    core = make_core(subscribe_max_dialogs_per_account=2)
    for _ in range(2):
        active_dialog(core)
    with pytest.raises(Reject) as refused:
        core.subscribe(subscribe_request(entries=ENTRIES), PHONE, ALICE)
    assert refused.value.status == 403
    fetch = core.subscribe(subscribe_request(entries=ENTRIES, expires=0), PHONE, ALICE)
    assert isinstance(fetch, Opening)  # a fetch holds nothing for long


def test_a_large_list_whose_save_failed_stays_whole_in_the_edge():
    core = make_core(edge_dialog_inline_entries_bytes=10)
    dialog, reply = open_dialog(core)
    assert dialog.entries is None and dialog.entry_keys
    core.stored(only(Store, reply.then), False)
    assert dialog.entries == ENTRIES and not dialog.entry_keys


# --- refreshes --------------------------------------------------------------------------------


def refresh(core, dialog, *, cseq=2, expires=600, user="alice", from_tag="ft"):
    request = subscribe_request(call_id=dialog.call_id, from_tag=from_tag,
                                to_tag=dialog.local_tag, cseq=cseq, expires=expires)  # fmt: skip
    return core.subscribe(request, PHONE, f"{user}@example.org")


def test_a_refresh_is_written_once_with_its_full_state_notifys_cseq_and_version():
    core = make_core()
    dialog = active_dialog(core)
    reply = refresh(core, dialog)
    assert isinstance(reply, Reply) and reply.response.status == 200
    lookup = only(Lookup, reply.then)
    assert lookup.payload["full_state"] is True and lookup.payload["entries"] == ENTRIES
    write = only(Store, core.looked_up(lookup, answer(users(BOB), version=dialog.version)))
    assert write.payload["op"] == "refresh" and write.payload["dialog"]["synced"] is True
    notify = only(SendNotify, core.stored(write, True))
    assert notify.request.cseq.seq == write.payload["dialog"]["local_cseq"]
    assert write.payload["version"] == dialog.version
    assert core.notified(notify, 200) == []  # no second write for the NOTIFY


def test_a_refresh_whose_lookup_failed_is_written_and_gets_its_full_state_once_one_answers():
    clock = Clock()
    core = make_core(clock)
    dialog = active_dialog(core)
    lookup = only(Lookup, refresh(core, dialog).then)
    write = only(Store, core.lookup_failed(lookup))
    assert dialog.state is DialogState.OWES_FULL_STATE and write.payload["op"] == "refresh"
    assert core.stored(write, True) == []
    again = only(Lookup, core.tick(clock.wall))
    assert again.payload["full_state"] is True
    notify = only(SendNotify, core.looked_up(again, answer(users(BOB), version=dialog.version)))
    record = only(Store, core.notified(notify, 200))  # the update is recorded
    assert dialog.state is DialogState.ACTIVE and record.payload["dialog"]["synced"] is True


def test_refresh_refusals():
    core = make_core()
    dialog = active_dialog(core)
    for kwargs, status in (({"from_tag": "other"}, 481), ({"user": "bob"}, 403),
                           ({"cseq": 1}, 500)):  # fmt: skip
        with pytest.raises(Reject) as refused:
            refresh(core, dialog, **kwargs)
        assert refused.value.status == status
    assert dialog.state is DialogState.ACTIVE


def test_a_refresh_during_an_update_waits_for_it():
    clock = Clock()
    core = make_core(clock)
    dialog = active_dialog(core)
    core.queue_messages([({"subscription_id": dialog.subscription_id, "uris": [DAN]}, "r1")])
    update = only(Lookup, core.tick(clock.wall))
    assert refresh(core, dialog).then == []  # answered; its full state waits
    notify = only(SendNotify, core.looked_up(update, answer(users(BOB, DAN), full=False)))
    record = only(Store, core.notified(notify, 200))
    after = core.stored(record, True)
    assert acked(after) == ["r1"] and only(Lookup, after).payload["full_state"] is True


def test_an_unsubscribe_ends_the_dialog_with_a_final_notify_then_deletes_it():
    core = make_core()
    dialog = active_dialog(core)
    reply = refresh(core, dialog, expires=0)
    assert reply.response.headers.get("Expires") == "0"
    final = only(SendNotify, reply.then)
    assert state_of(final.request) == "terminated;reason=timeout"
    assert only(Delete, core.notified(final, 200)).subscription_id == dialog.subscription_id
    assert not core.dialogs
    with pytest.raises(Reject) as gone:
        refresh(core, dialog, cseq=3)
    assert gone.value.status == 481


# --- live updates from the queue -----------------------------------------------------------------


def change(dialog, *uris, receipt="r1"):
    return ({"subscription_id": dialog.subscription_id, "uris": list(uris)}, receipt)


def test_a_change_is_acknowledged_only_once_its_notify_went_out():
    clock = Clock()
    core = make_core(clock)
    dialog = active_dialog(core)
    assert core.queue_messages([change(dialog, DAN)]) == []
    lookup = only(Lookup, core.tick(clock.wall))
    assert lookup.payload == {**lookup.payload, "entries": [DAN], "full_state": False}
    notify = only(
        SendNotify,
        core.looked_up(
            lookup, answer([resource(DAN, "sip:dan@x")], version=dialog.version, full=False)
        ),
    )
    assert "active" in state_of(notify.request)
    record = only(Store, core.notified(notify, 200))
    assert acked(core.stored(record, True)) == ["r1"]


def test_a_change_with_nowhere_to_go_is_acknowledged_at_once():
    core = make_core()
    dialog = active_dialog(core)
    gone = ({"subscription_id": "nope", "uris": [DAN]}, "r1")
    outside = change(dialog, "sip:stranger@example.org", receipt="r2")
    assert acked(core.queue_messages([gone, outside])) == ["r1", "r2"]
    assert not dialog.dirty


def test_a_replayed_change_sends_nothing():
    clock = Clock()
    core = make_core(clock)
    dialog = active_dialog(core)  # bob a user
    core.queue_messages([change(dialog, BOB)])
    lookup = only(Lookup, core.tick(clock.wall))
    same = [r for r in users(BOB) if r["uri"] == BOB]  # what the phone was told already
    assert acked(core.looked_up(lookup, answer(same, full=False))) == ["r1"]


def test_the_throttle_gives_one_update_per_interval_on_the_pacing_clock():
    clock = Clock()
    core = make_core(clock, notify_min_interval=30.0)
    dialog = active_dialog(core)
    core.queue_messages([change(dialog, DAN)])
    clock.wall += 100  # a wall clock step opens nothing
    assert core.tick(clock.wall - 90) == []
    clock.mono += 30
    assert only(Lookup, core.tick(clock.wall - 90))


def test_a_failed_lookup_puts_the_change_back_for_the_next_tick():
    clock = Clock()
    core = make_core(clock)
    dialog = active_dialog(core)
    core.queue_messages([change(dialog, DAN)])
    assert core.lookup_failed(only(Lookup, core.tick(clock.wall))) == []
    assert dialog.dirty == {DAN} and dialog.receipts == ["r1"]
    assert only(Lookup, core.tick(clock.wall)).work.receipts == ["r1"]


@pytest.mark.parametrize(("profile", "full"), [("linphone", True), ("rfc", False)])
def test_a_user_gone_goes_to_linphone_as_a_full_state(profile, full):
    clock = Clock()
    core = make_core(clock, notify_full_state_on_removal="linphone")
    agent = "LinphoneAndroid/4.6" if profile == "linphone" else "baresip v1.0.0"
    dialog = active_dialog(core, agent=agent)
    assert dialog.profile == profile
    core.queue_messages([change(dialog, BOB)])
    partial = only(Lookup, core.tick(clock.wall))
    after = core.looked_up(partial, answer([resource(BOB, None)], full=False))
    if full:
        assert only(Lookup, after).payload["full_state"] is True
    else:
        assert only(SendNotify, after)


def test_a_lapsing_status_is_looked_at_again_when_it_lapses():
    clock = Clock()
    core = make_core(clock)
    dialog = active_dialog(core)
    dialog.rechecks[BOB] = clock.wall + 5
    assert core.tick(clock.wall) == []
    clock.advance(5)
    assert only(Lookup, core.tick(clock.wall)).payload["entries"] == [BOB]


def test_at_most_edge_notify_concurrency_updates_at_once_in_the_order_they_became_ready():
    clock = Clock()
    core = make_core(clock, edge_notify_concurrency=2)
    dialogs = [active_dialog(core) for _ in range(5)]
    for i, d in enumerate(dialogs):
        core.queue_messages([change(d, DAN, receipt=f"r{i}")])
    first = of(Lookup, core.tick(clock.wall))
    assert [a.dialog for a in first] == dialogs[:2] and core.updating == 2
    assert of(Lookup, core.tick(clock.wall)) == []
    nothing_new = answer([resource(DAN, None)], full=False)
    after = core.looked_up(first[0], nothing_new)
    assert acked(after) == ["r0"] and [a.dialog for a in of(Lookup, after)] == [dialogs[2]]


def test_an_expired_dialog_ends_with_a_final_notify():
    clock = Clock()
    core = make_core(clock)
    dialog = active_dialog(core)
    clock.advance(600)
    final = only(SendNotify, core.tick(clock.wall))
    assert state_of(final.request) == "terminated;reason=timeout" and dialog.state.name == "ENDING"
    assert core.tick(clock.wall) == []  # ending: no second final NOTIFY
    assert of(Delete, core.notified(final, 408))


# --- ends -----------------------------------------------------------------------------------------


def test_a_revocation_ends_only_the_named_subscribers_dialogs_at_once():
    clock = Clock()
    core = make_core(clock)
    dialog = active_dialog(core)
    other = {"kind": "revoke", "subscriber": "bob@example.org", "reason": "rejected",
             "subscription_ids": [dialog.subscription_id]}  # fmt: skip
    assert core.revoke(other) == (0, [])
    core.queue_messages([change(dialog, DAN, receipt="r0")])
    update = only(Lookup, core.tick(clock.wall))  # an update in progress
    revoke = {**other, "subscriber": "Alice@example.org", "reason": "deactivated"}
    actions = core.queue_messages([(revoke, "r1")])
    final = only(SendNotify, actions)
    assert acked(actions) == ["r1"] and core.updating == 0
    assert state_of(final.request) == "terminated;reason=deactivated"
    assert core.looked_up(update, answer(users(BOB, DAN), full=False)) == []  # too late
    gone = core.notified(final, 200)
    assert acked(gone) == ["r0"] and of(Delete, gone) and not core.dialogs
    assert core.stats["revoked"] == 1


def test_a_final_notify_waits_for_the_one_out_and_nothing_follows_it():
    core = make_core()
    dialog = active_dialog(core)
    lookup = only(Lookup, refresh(core, dialog).then)
    write = only(Store, core.looked_up(lookup, answer(users(BOB), version=dialog.version)))
    notify = only(SendNotify, core.stored(write, True))
    assert core.revoke({"subscriber": ALICE, "subscription_ids": [dialog.subscription_id]})[1] == []
    final = only(SendNotify, core.notified(notify, 200))
    assert final.request.cseq.seq == notify.request.cseq.seq + 1 and final.final
    assert state_of(final.request) == "terminated;reason=rejected"


def test_a_failed_notify_ends_the_dialog_and_acknowledges_its_changes():
    clock = Clock()
    core = make_core(clock)
    dialog = active_dialog(core)
    core.queue_messages([change(dialog, DAN)])
    notify = only(SendNotify, core.looked_up(only(Lookup, core.tick(clock.wall)),
                                             answer(users(BOB, DAN), full=False)))  # fmt: skip
    gone = core.notified(notify, 481)
    assert acked(gone) == ["r1"] and of(Delete, gone) and not core.dialogs
    assert dialog.state is DialogState.TERMINATED


def test_a_lost_connection_ends_its_dialogs_without_a_notify():
    core = make_core()
    dialog = active_dialog(core)
    actions = core.connection_lost(PHONE)
    assert only(Delete, actions) and not of(SendNotify, actions) and not core.dialogs
    assert dialog.state is DialogState.TERMINATED


def test_a_dialog_ended_while_a_write_is_out_is_deleted_after_that_write():
    core = make_core()
    dialog, reply = open_dialog(core)
    save = only(Store, reply.then)
    assert not of(Delete, core.connection_lost(PHONE))  # the save could land after a delete
    assert only(Delete, core.stored(save, True)).subscription_id == dialog.subscription_id


def test_a_full_state_lookup_refused_ends_the_dialog_noresource():
    core = make_core()
    dialog = active_dialog(core)
    lookup = only(Lookup, refresh(core, dialog).then)
    final = only(SendNotify, core.looked_up(lookup, REFUSED))
    assert state_of(final.request) == "terminated;reason=noresource"


# --- reload and stop ------------------------------------------------------------------------------


def stored_page(*dialogs, transport="udp"):
    out = []
    for d in dialogs:
        record = d.to_record()
        record["peer"]["transport"] = transport
        out.append({"subscription_id": d.subscription_id, "edge_id": "edge-1",
                    "subscriber": d.subscriber, "expires_at": int(d.expires_at),
                    "version": d.version, "dialog": record, "entries": ENTRIES})  # fmt: skip
    return {"subscriptions": out, "next": None}


def test_a_reload_resumes_udp_dialogs_owing_a_full_state_to_phones_not_synced():
    old = make_core()
    synced = active_dialog(old)
    unsynced, _ = open_dialog(old)
    stream = active_dialog(old)
    core = make_core()
    deleted = core.reloaded(stored_page(synced, unsynced))
    deleted += core.reloaded(stored_page(stream, transport="tcp"))
    unreadable = stored_page(synced)
    unreadable["subscriptions"][0]["dialog"] = {"schema": 99}
    deleted += core.reloaded(unreadable)
    assert [a.subscription_id for a in of(Delete, deleted)] == [
        stream.subscription_id,
        synced.subscription_id,
    ]
    assert core.reload_done() == 2 and core.stats["resumed"] == 2
    assert core.dialogs[synced.subscription_id].state is DialogState.ACTIVE
    assert core.dialogs[unsynced.subscription_id].state is DialogState.OWES_FULL_STATE
    lookup = only(Lookup, core.tick(Clock().wall))
    assert lookup.dialog.subscription_id == unsynced.subscription_id
    assert lookup.payload["full_state"] is True


def test_a_stop_releases_every_change_not_notified_and_writes_the_synced_dialogs():
    clock = Clock()
    core = make_core(clock)
    written = active_dialog(core)
    core.stored(core.synced_writes()[0], True)  # its answer is on record now
    waiting, working = active_dialog(core), active_dialog(core)
    core.queue_messages([change(working, DAN, receipt="r1")])
    only(Lookup, core.tick(clock.wall))
    core.queue_messages([change(waiting, DAN, receipt="r2")])
    assert sorted(only(Release, core.release()).receipts) == ["r1", "r2"]
    assert core.release() == []
    writes = core.synced_writes()
    assert {w.dialog.subscription_id for w in writes} == {
        waiting.subscription_id,
        working.subscription_id,
    }
    assert written.synced_stored and all(w.payload["dialog"]["synced"] for w in writes)


def test_settle_answers_a_whole_life():
    core = make_core()
    dialog, reply = open_dialog(core, entries=[CAROL])
    seen = settle(core, reply.then)
    assert [type(a) for a in seen] == [Store, SendNotify] and dialog.synced
    assert not of(Ack, seen)
