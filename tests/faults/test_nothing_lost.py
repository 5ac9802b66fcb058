"""Nothing lost: a live update SQS refuses, or a stream batch that fails, is delivered again
until it reaches the phone."""

from __future__ import annotations

import json
import time

from testkit.notify_body import users_in
from testkit.sip_client import SipClient
from testkit.wait import wait_until
from tests.edge.conftest import DOMAIN, EdgeThread, make_account
from tests.edge.test_edge_subscribe import subscribe
from tests.edge.test_live_updates import (
    ENTRIES,
    NEWCOMER,
    deliver,
)
from tests.faults.botofaults import Faults, json_response


def _all_failed(request) -> object:
    entries = json.loads(request.body)["Entries"]
    return json_response(
        {
            "Successful": [],
            "Failed": [
                {"Id": e["Id"], "SenderFault": False, "Code": "RequestThrottled", "Message": "x"}
                for e in entries
            ],
        }
    )


def test_refused_send_message_batch_entries_are_retried_until_the_phone_knows(
    live_edge, world, clock
):
    phone = SipClient(live_edge.address)
    assert subscribe(phone, ENTRIES).status == 200
    assert NEWCOMER not in users_in(phone.notify())
    world.pump()

    faults = Faults()
    faults.answer("sqs", "SendMessageBatch", _all_failed)
    make_account("dan", "+33699999999")
    try:
        # The account's own record names only its SIP URI, which no list here holds: it is
        # delivered. Its number's (PhoneIndex) record, whose message SQS refused, is not.
        assert world.pump() == 1, "a batch SQS refused must not count as delivered"
        assert faults.calls["sqs"] >= 1
        assert world.pump() == 0, "the same records are read again while SQS refuses"
        assert faults.calls["sqs"] >= 2
    finally:
        faults.clear()
    deliver(world, live_edge, clock)
    update = phone.notify()
    assert update is not None, "the refused update never reached the phone"
    assert users_in(update) == {NEWCOMER: f"sip:dan@{DOMAIN}"}


def test_a_stream_batch_that_raises_is_read_again(live_edge, world, clock):
    phone = SipClient(live_edge.address)
    assert subscribe(phone, ENTRIES).status == 200
    phone.notify()
    world.pump()

    faults = Faults()
    faults.set("sqs", "refuse", operations={"SendMessageBatch"})
    make_account("dan", "+33699999999")
    try:
        for _ in range(4):  # the records stay pending: every pump meets them again
            try:
                world.pump()
                raised = False
            except Exception:
                raised = True
            assert raised, "SQS down must fail the stream batch, every time it is read"
    finally:
        faults.clear()
    deliver(world, live_edge, clock)
    update = phone.notify()
    assert update is not None and users_in(update) == {NEWCOMER: f"sip:dan@{DOMAIN}"}


def test_a_refused_queue_delete_is_tried_again(aws):
    from chalicelib import settings
    from chalicelib.aws import client
    from sip_edge.queue import EdgeQueue

    queue = EdgeQueue(settings.get())
    url = client("sqs").create_queue(QueueName="sc-test-edge-faults")["QueueUrl"]
    queue.url = url
    client("sqs").send_message(QueueUrl=url, MessageBody=json.dumps({"subscription_id": "s"}))
    refusals = []

    def refuse_once(request) -> object:
        if refusals:
            return None
        entries = json.loads(request.body)["Entries"]
        refusals.append(len(entries))
        failed = [
            {"Id": e["Id"], "SenderFault": False, "Code": "RequestThrottled"} for e in entries
        ]
        return json_response({"Successful": [], "Failed": failed})

    faults = Faults()
    faults.answer("sqs", "DeleteMessageBatch", refuse_once)
    try:
        [(body, receipt)] = queue._receive()
        assert body == {"subscription_id": "s"}
        queue._delete([receipt])
    finally:
        faults.clear()
    assert refusals == [1]
    attrs = client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0", "the refused delete was dropped"


def kill(edge: EdgeThread) -> None:
    """Stop an edge the way SIGKILL does: no shutdown, nothing handed back, state in memory lost."""
    edge.loop.call_soon_threadsafe(edge.loop.stop)
    edge.thread.join(5)


def test_a_change_read_but_not_yet_notified_survives_a_killed_edge(world, clock):
    cfg = {"edge_id": "edge-killed", "edge_queue_visibility": 2}
    first = EdgeThread(notify_min_interval=60.0, **cfg)
    first.edge.clock = clock
    phone = SipClient(first.address)
    assert subscribe(phone, ENTRIES).status == 200
    assert phone.notify() is not None  # the throttle window is now open for 60 s
    world.pump()
    make_account("dan", "+33699999999")
    world.pump()
    assert wait_until(
        lambda: any(d.dirty for d in first.edge.subscriptions.dialogs.values()), 10
    ), "the edge never read the change"
    kill(first)  # read from the queue, held back by the throttle, never notified

    second = EdgeThread(notify_min_interval=0.0, **cfg)
    try:
        assert second.edge.stats["resumed"] == 1
        update = phone.notify(timeout=15)
        assert update is not None, "the change the killed edge had read was lost"
        # In the full state the new edge owes a dialog no write shows its phone to hold.
        assert users_in(update)[NEWCOMER] == f"sip:dan@{DOMAIN}"
    finally:
        second.stop()
        phone.close()


def _a_dialog_left_by_a_stopped_edge(edge_id: str) -> tuple[dict, SipClient]:
    """A phone subscribed at edge `edge_id`, which then stopped: its dialog waits in storage
    for the next edge with that id. Answers that edge's settings and the phone."""
    cfg = {"edge_id": edge_id, "notify_min_interval": 0.0}
    first = EdgeThread(**cfg)
    phone = SipClient(first.address)
    assert subscribe(phone, ENTRIES).status == 200
    assert phone.notify() is not None
    first.has_the_answers()
    first.stop()
    return cfg, phone


def test_an_edge_started_during_an_outage_waits_for_its_dialogs(world, clock):
    import threading

    cfg, phone = _a_dialog_left_by_a_stopped_edge("edge-outage")

    faults = Faults()
    faults.set("dynamodb", "refuse")
    started: list[EdgeThread] = []
    boot = threading.Thread(target=lambda: started.append(EdgeThread(**cfg)))
    boot.start()
    # The new edge keeps trying to load its dialogs meanwhile, and does not start without them.
    assert wait_until(lambda: faults.calls.get("dynamodb", 0) >= 3, 20), faults.calls
    assert not started, "the edge started without its dialogs"
    faults.clear()
    boot.join(20)
    assert started, "the edge never started once DynamoDB was back"
    second = started[0]
    try:
        assert second.edge.stats["resumed"] == 1
    finally:
        second.stop()
        phone.close()


def test_sqs_down_for_a_minute_delays_the_update_and_drops_nothing(live_edge, world, clock):
    """Every SQS call refused for 60 s (the stream handler's sends, the edge's long polls and
    deletes): the sign-up made meanwhile reaches the phone once SQS is back."""
    import pytest

    phone = SipClient(live_edge.address)
    assert subscribe(phone, ENTRIES).status == 200
    phone.notify()
    world.pump()
    faults = Faults()
    faults.set("sqs", "refuse")
    try:
        make_account("dan", "+33699999999")
        failures = 0
        down_until = time.monotonic() + 60
        while time.monotonic() < down_until:  # the replayer keeps meeting the same records
            try:
                world.pump()
            except Exception:
                failures += 1
            time.sleep(2)  # a minute of real outage is the point: the replayer's pace through it
        assert failures >= 20, "SQS down must fail the stream batch each time it is read"
        assert phone.notify(timeout=0.5) is None  # nothing could reach the phone meanwhile
    finally:
        faults.clear()
    deliver(world, live_edge, clock)
    update = phone.notify(timeout=10)
    if update is None:
        pytest.fail("the sign-up made while SQS was down never reached the phone")
    assert users_in(update) == {NEWCOMER: f"sip:dan@{DOMAIN}"}


def test_an_edge_past_its_reload_wait_serves_while_it_keeps_reloading(world, clock):
    """EDGE_RELOAD_WAIT: an outage longer than it no longer keeps the slot dark; the edge
    answers new requests, and resumes its dialogs once the backend is back (with backoff)."""
    cfg, phone = _a_dialog_left_by_a_stopped_edge("edge-late")

    faults = Faults()
    faults.set("dynamodb", "refuse")
    second = EdgeThread(edge_reload_wait=0.5, **cfg)
    other = SipClient(second.address)
    try:
        assert "resumed" not in second.edge.stats
        other.request("OPTIONS", f"sip:{DOMAIN}", from_uri=f"sip:x@{DOMAIN}")
        assert other.response("OPTIONS").status == 200
        faults.clear()
        assert wait_until(lambda: second.edge.stats.get("resumed") == 1, 15), (
            "the dialogs never came back"
        )
    finally:
        faults.clear()
        second.stop()
        other.close()
        phone.close()
