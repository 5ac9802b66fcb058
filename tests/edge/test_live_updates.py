"""Live contact lists: stream records -> watchers -> edge queue -> partial NOTIFYs, throttled,
idempotent, surviving an edge restart; PUBLISH and the mutual-contacts rule."""

from __future__ import annotations

import time

import pytest

from chalicelib import accounts
from chalicelib.live import subscriptions
from devstack.streams import StreamReplayer
from testkit.notify_body import users_in
from testkit.sip_client import SipClient
from testkit.wait import wait_until
from tests.edge.conftest import DOMAIN, PASSWORD, EdgeThread, make_account
from tests.edge.test_edge_subscribe import RLS, subscribe

NEWCOMER = f"sip:+33699999999@{DOMAIN};user=phone"
ENTRIES = [f"sip:+33612345678@{DOMAIN};user=phone", NEWCOMER, f"sip:carol@{DOMAIN}"]


def rlmi_of(notify) -> str:
    import zlib

    body = notify.body
    if "deflate" in (notify.headers.get("Content-Encoding") or ""):
        body = zlib.decompress(body)
    return body.decode()


class Clock:
    """The edge's clocks, moved by hand: the throttle is tested without sleeping through it.

    Called, the wall clock (expiries, rechecks); `pacing`, the monotonic NOTIFY throttle."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def pacing(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def live_edge(world, clock):
    edge = EdgeThread(notify_min_interval=30.0)
    edge.edge.clock = clock
    edge.edge.pacing = clock.pacing
    yield edge
    edge.stop()


def deliver(world: StreamReplayer, edge: EdgeThread, clock: Clock, *, advance: float = 31.0):
    """Replay the streams, let the edge read its queue, then open the throttle window."""
    world.pump()
    wait_until(lambda: any(d.dirty for d in edge.edge.subscriptions.dialogs.values()), 5)
    clock.offset += advance


def test_sign_up_then_unlink_reach_the_subscribed_phone(live_edge, world, clock):
    phone = SipClient(live_edge.address)
    assert subscribe(phone, ENTRIES).status == 200
    first = phone.notify()
    assert NEWCOMER not in users_in(first)
    world.pump()  # the subscriber's own setup records: nothing for this list

    make_account("dan", "+33699999999")
    deliver(world, live_edge, clock)
    update = phone.notify()
    assert update is not None, "no NOTIFY after the sign-up"
    assert 'fullState="false"' in rlmi_of(update)
    assert users_in(update) == {NEWCOMER: f"sip:dan@{DOMAIN}"}

    accounts.unlink_phone(f"dan@{DOMAIN}")
    deliver(world, live_edge, clock)
    gone = phone.notify()
    assert gone is not None, "no NOTIFY after the unlink"
    assert NEWCOMER in rlmi_of(gone) and users_in(gone) == {}


def test_burst_gives_one_notify_per_interval(live_edge, world, clock):
    phone = SipClient(live_edge.address)
    many = [f"sip:+3369999{i:04d}@{DOMAIN};user=phone" for i in range(20)]
    assert subscribe(phone, many).status == 200
    phone.notify()
    world.pump()
    for i in range(20):
        make_account(f"new{i}", f"+3369999{i:04d}")
    world.pump()
    dialogs = live_edge.edge.subscriptions.dialogs
    # The edge has read its queue (all 20 changes); the throttle window is still closed.
    assert wait_until(lambda: sum(len(d.dirty) for d in dialogs.values()) >= 20, 10)
    assert phone.notify(timeout=0.5) is None
    clock.offset += 31
    # One update; it may span several NOTIFYs back to back when it outgrows the UDP body size limit.
    seen: dict[str, str] = {}
    while (update := phone.notify(timeout=1.0)) is not None:
        assert 'fullState="false"' in rlmi_of(update)
        seen.update(users_in(update))
    assert len(seen) == 20


def test_replayed_and_unknown_changes_change_nothing(live_edge, world, clock):
    phone = SipClient(live_edge.address)
    assert subscribe(phone, ENTRIES).status == 200
    phone.notify()
    world.pump()
    make_account("dan", "+33699999999")
    records = []
    original = world._handler_of["PhoneIndex"]
    world._handler_of["PhoneIndex"] = lambda event, ctx: (
        records.append(event),
        original(event, ctx),
    )
    deliver(world, live_edge, clock)
    assert phone.notify() is not None
    # The same stream records again, and a change for a subscription nobody holds.
    for event in records:
        original(event, None)
    from chalicelib.live import updates as live_updates

    live_updates._send(live_edge.edge.edge_id, [{"subscription_id": "nope", "uris": ENTRIES}])
    deliver(world, live_edge, clock)
    assert phone.notify(timeout=1.5) is None


def test_udp_subscriptions_survive_an_edge_restart(world, clock):
    first = EdgeThread(notify_min_interval=0.0)
    port = first.address[1]
    phone = SipClient(first.address)
    tcp = SipClient(first.address, "tcp")
    assert subscribe(phone, ENTRIES).status == 200
    phone.notify()
    ok = subscribe(tcp, ENTRIES)
    tcp.notify()
    first.has_the_answers()
    stopping = first.edge
    first.stop()
    tcp.close()
    # A clean stop stores what a new dialog's first write could not: that its phone answered
    # a full state. The new edge then owes it none (see the next test for one without). Not
    # for the TCP dialog: the next edge drops it, its connection gone.
    assert stopping.stats["synced_at_stop"] == 1
    stored = {s["dialog"]["call_id"]: s["dialog"]["synced"]
              for s in subscriptions.load_edge(stopping.edge_id)}  # fmt: skip
    assert stored[phone.call_id] is True and not stored.get(tcp.call_id)  # (or deleted)

    second = EdgeThread(notify_min_interval=0.0, sip_port=port)
    try:
        assert second.edge.stats["resumed"] == 1
        world.pump()
        make_account("dan", "+33699999999")
        world.pump()
        update = phone.notify()
        assert update is not None and users_in(update) == {NEWCOMER: f"sip:dan@{DOMAIN}"}
        # The TCP dialog died with its connection: its refresh gets 481.
        again = SipClient(second.address, "tcp")
        again.from_tag = tcp.from_tag
        again.call_id = tcp.call_id
        again.cseq = tcp.cseq
        to = ok.headers.get("To")
        again.request("SUBSCRIBE", RLS, from_uri=f"sip:alice@{DOMAIN}", to=to,
                      headers=[("Event", "presence")])  # fmt: skip
        challenge = again.response("SUBSCRIBE")
        again.authorized("SUBSCRIBE", RLS, challenge, username="alice", password=PASSWORD,
                         from_uri=f"sip:alice@{DOMAIN}", to=to,
                         headers=[("Event", "presence")])  # fmt: skip
        assert again.response("SUBSCRIBE").status == 481
        again.close()
    finally:
        second.stop()


def test_a_phone_whose_first_notify_went_unanswered_gets_full_state_after_a_restart(world):
    """A new dialog is stored before its first NOTIFY goes (one write per SUBSCRIBE). If the
    edge stops before the phone answers it, the edge that resumes the dialog sends full state
    at once instead of leaving the phone with none, above the lost NOTIFY's CSeq and version;
    then live updates go on as partial NOTIFYs. The same happens to a phone that did answer
    when no write recorded it (an edge killed before a refresh or an update stored the dialog
    again): the new edge cannot tell. (A dialog stored since its phone answered, at the
    latest by a clean stop, gets nothing at the restart: the test above.)"""
    from testkit.notify_body import parse_notify

    first = EdgeThread(notify_min_interval=0.0)
    port, edge_id = first.address[1], first.edge.edge_id
    phone = SipClient(first.address)
    second = None
    try:
        assert subscribe(phone, ENTRIES).status == 200
        lost = phone.notify(answer=None)  # its 200 never reaches the edge
        assert lost is not None and 'fullState="true"' in rlmi_of(lost)
        first.stop()
        [stored] = subscriptions.load_edge(edge_id)
        assert stored["dialog"]["synced"] is False

        second = EdgeThread(notify_min_interval=0.0, sip_port=port)
        assert second.edge.stats["resumed"] == 1
        full = phone.notify(answer=None)
        while full is not None and full.cseq.seq == lost.cseq.seq:  # the old edge's resends
            full = phone.notify(answer=None)
        assert full is not None, "the resumed edge sent nothing"
        phone.answer(full, 200)
        assert full.cseq.seq > lost.cseq.seq
        rlmi = parse_notify(full).rlmi
        assert rlmi.get("fullState") == "true"
        assert int(rlmi.get("version")) > int(parse_notify(lost).rlmi.get("version"))
        assert users_in(full) == users_in(lost)
        assert users_in(full)[ENTRIES[0]] == f"sip:bob@{DOMAIN}"
        assert wait_until(lambda: subscriptions.load_edge(edge_id)[0]["dialog"]["synced"], 5)
        [stored] = subscriptions.load_edge(edge_id)
        assert stored["dialog"]["synced"] is True
        assert stored["dialog"]["local_cseq"] == full.cseq.seq

        make_account("dan", "+33699999999")
        world.pump()
        update = phone.notify()
        assert update is not None and 'fullState="false"' in rlmi_of(update)
        assert users_in(update) == {NEWCOMER: f"sip:dan@{DOMAIN}"}
    finally:
        phone.close()
        if second is not None:
            second.stop()


def test_a_stop_stores_answers_for_at_most_edge_stop_wait_and_the_next_edge_resyncs_the_rest(
    world, monkeypatch
):
    """Past EDGE_STOP_WAIT the stop goes on without storing: the store stalls here, the stop
    still ends within the wait, and the dialog whose answer was not stored gets full state
    from the next edge."""
    import app

    first = EdgeThread(notify_min_interval=0.0, edge_stop_wait=0.5)
    port, stopping = first.address[1], first.edge
    phone = SipClient(first.address)
    second = None
    try:
        assert subscribe(phone, ENTRIES).status == 200
        first_notify = phone.notify()
        assert first_notify is not None
        first.has_the_answers()

        def stalled(event, context):
            time.sleep(3)  # the stall is the point: longer than EDGE_STOP_WAIT
            raise RuntimeError("sip_subscriptions stalled")

        monkeypatch.setattr(app, "sip_subscriptions", stalled)
        started = time.monotonic()
        first.stop()
        assert time.monotonic() - started < 2.5
        assert stopping.stats["synced_at_stop"] == 0
        monkeypatch.undo()
        [stored] = subscriptions.load_edge(stopping.edge_id)
        assert stored["dialog"]["synced"] is False

        second = EdgeThread(notify_min_interval=0.0, sip_port=port)
        full = phone.notify()
        while full is not None and full.cseq.seq == first_notify.cseq.seq:
            full = phone.notify()
        assert full is not None and 'fullState="true"' in rlmi_of(full)
    finally:
        phone.close()
        if second is not None:
            second.stop()


PIDF_BUSY = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" '
    'xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" '
    'xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" entity="sip:bob@example.org">'
    '<tuple id="t1"><status><basic>open</basic></status></tuple>'
    '<dm:person id="p1"><rpid:activities><rpid:busy/></rpid:activities>'
    "<dm:note>in a meeting</dm:note></dm:person></presence>"
)


def publish(client: SipClient, body: str, *, user: str = "bob", if_match: str | None = None,
            expires: str = "600"):  # fmt: skip
    headers = [("Event", "presence"), ("Content-Type", "application/pidf+xml"),
               ("Expires", expires)]  # fmt: skip
    if if_match:
        headers.append(("SIP-If-Match", if_match))
    uri = f"sip:{user}@{DOMAIN}"
    client.request("PUBLISH", uri, from_uri=uri, headers=headers, body=body.encode())
    challenge = client.response("PUBLISH")
    client.authorized("PUBLISH", uri, challenge, username=user, password=PASSWORD,
                      from_uri=uri, headers=headers, body=body.encode())  # fmt: skip
    return client.response("PUBLISH")


def test_publish_lifecycle(live_edge):
    bob = SipClient(live_edge.address)
    ok = publish(bob, PIDF_BUSY)
    assert ok.status == 200 and ok.headers.get("SIP-ETag") and ok.headers.get("Expires") == "600"
    etag = ok.headers.get("SIP-ETag")
    refreshed = publish(bob, "", if_match=etag)
    assert refreshed.status == 200 and refreshed.headers.get("SIP-ETag") != etag
    assert publish(bob, "", if_match="unknown").status == 412
    assert publish(bob, PIDF_BUSY, expires="10").status == 423
    not_mine = PIDF_BUSY.replace("sip:bob@", "sip:carol@")
    assert publish(bob, not_mine).status == 403
    removed = publish(bob, "", if_match=refreshed.headers.get("SIP-ETag"), expires="0")
    assert removed.status == 200 and removed.headers.get("Expires") == "0"


def test_detailed_status_only_for_mutual_contacts(live_edge, world, clock):
    alice = SipClient(live_edge.address)
    carol = SipClient(live_edge.address)
    bob = SipClient(live_edge.address)
    bob_number = f"sip:+33612345678@{DOMAIN};user=phone"
    # Alice and Carol both have Bob's number; Bob has only Alice's.
    assert subscribe(alice, [bob_number]).status == 200
    alice.notify()
    assert subscribe(carol, [bob_number], user="carol").status == 200
    carol.notify()
    assert subscribe(bob, [f"sip:+33611111111@{DOMAIN};user=phone"], user="bob").status == 200
    bob.notify()
    world.pump()
    publisher = SipClient(live_edge.address)
    assert publish(publisher, PIDF_BUSY).status == 200
    deliver(world, live_edge, clock)
    to_alice = rlmi_of(alice.notify())
    to_carol = carol.notify()
    assert "<rpid:busy/>" in to_alice and "in a meeting" in to_alice
    if to_carol is not None:  # carol may get nothing: for her nothing changed
        assert "busy" not in rlmi_of(to_carol) and "meeting" not in rlmi_of(to_carol)
    # A fresh full-state NOTIFY to Carol still says only "is a user".
    late = SipClient(live_edge.address)
    assert subscribe(late, [bob_number], user="carol").status == 200
    body = rlmi_of(late.notify())
    assert "<rpid:away/>" in body and "busy" not in body and "meeting" not in body
    # The other direction: Alice has Bob, so what Alice publishes reaches Bob.
    world.pump()
    on_the_phone = PIDF_BUSY.replace("sip:bob@", "sip:alice@").replace("busy", "on-the-phone")
    assert publish(SipClient(live_edge.address), on_the_phone, user="alice").status == 200
    deliver(world, live_edge, clock)
    to_bob = rlmi_of(bob.notify())
    assert "<rpid:on-the-phone/>" in to_bob and "in a meeting" in to_bob


def register(client: SipClient, user: str, expires: str):
    uri = f"sip:{user}@{DOMAIN}"
    headers = [("Expires", expires)]
    client.request("REGISTER", f"sip:{DOMAIN}", from_uri=uri, headers=headers)
    challenge = client.response("REGISTER")
    client.authorized("REGISTER", f"sip:{DOMAIN}", challenge, username=user,
                      password=PASSWORD, from_uri=uri, headers=headers)  # fmt: skip
    return client.response("REGISTER")


def test_registration_shows_a_mutual_contact_online_until_it_lapses(world, monkeypatch):
    from chalicelib import settings

    monkeypatch.setenv("REGISTER_MIN_EXPIRES", "1")
    settings.get.cache_clear()
    edge = EdgeThread(notify_min_interval=0.0)
    try:
        alice, bob = SipClient(edge.address), SipClient(edge.address)
        assert subscribe(alice, [f"sip:+33612345678@{DOMAIN};user=phone"]).status == 200
        assert "<rpid:away/>" in rlmi_of(alice.notify())
        assert subscribe(bob, [f"sip:+33611111111@{DOMAIN};user=phone"], user="bob").status == 200
        bob.notify()
        world.pump()
        assert register(SipClient(edge.address), "bob", "3").status == 200
        world.pump()
        online = alice.notify()
        assert online is not None and "<rpid:away/>" not in rlmi_of(online)
        assert "<basic>open</basic>" in rlmi_of(online)
        # The binding lapses without any write: the edge looks again when it expires.
        lapsed = alice.notify(timeout=8)
        assert lapsed is not None and "<rpid:away/>" in rlmi_of(lapsed)
    finally:
        edge.stop()


def subscribe_to_contact(device: SipClient, user: str, target: str):
    """One per-contact presence SUBSCRIBE (RFC 3856), as baresip sends one per contact."""
    uri, to = f"sip:{user}@{DOMAIN}", f"sip:{target}@{DOMAIN}"
    call_id = f"{user}-{target}-{time.monotonic_ns()}"
    headers = [("Event", "presence"), ("Expires", "600"), ("User-Agent", "baresip v1.0.0")]
    device.request("SUBSCRIBE", to, from_uri=uri, to=f"<{to}>", headers=headers, call_id=call_id)
    challenge = device.response("SUBSCRIBE")
    device.authorized("SUBSCRIBE", to, challenge, username=user, password=PASSWORD,
                      from_uri=uri, to=f"<{to}>", headers=headers, call_id=call_id,
                      algorithm="MD5")  # fmt: skip
    assert device.response("SUBSCRIBE").status == 200
    return call_id


def notify_of(device: SipClient, call_id: str, online: bool | None = None):
    """The next NOTIFY of one dialog (saying online, or not, if asked): a UDP retransmission
    of an earlier one, seen on a loaded machine, is skipped by its CSeq."""
    seen: set[int] = set()
    while (notify := device.notify()) is not None:
        if notify.call_id != call_id or notify.cseq.seq in seen:
            continue
        seen.add(notify.cseq.seq)
        if online is None or online == ("<rpid:away/>" not in notify.body.decode()):
            return notify
    return None


def test_per_contact_subscribers_see_each_other_once_both_lists_hold_the_other(world):
    """Both register before they subscribe, as phones do; each device watches two contacts."""
    edge = EdgeThread(notify_min_interval=0.0)
    try:
        assert register(SipClient(edge.address), "bob", "600").status == 200
        world.pump()  # Bob's registration is old news before anyone watches him
        alice = SipClient(edge.address)
        to_bob = subscribe_to_contact(alice, "alice", "bob")
        first = notify_of(alice, to_bob).body.decode()
        assert "<rpid:away/>" in first  # Bob does not watch Alice yet: "a user", no status
        subscribe_to_contact(alice, "alice", "carol")  # the same device, a second dialog
        bob = SipClient(edge.address)
        to_alice = subscribe_to_contact(bob, "bob", "alice")
        # Alice is in Bob's list now: Alice's dialog on Bob looks again and says online.
        online = notify_of(alice, to_bob, online=True)
        assert online is not None, "Alice never learned that Bob is online"
        assert "<basic>open</basic>" in online.body.decode()
        # Alice watches Bob through her first dialog still, though her device made another
        # since: Bob gets Alice's own status, online once she registers.
        assert "<rpid:away/>" in notify_of(bob, to_alice).body.decode()
        assert register(SipClient(edge.address), "alice", "600").status == 200
        world.pump()
        assert notify_of(bob, to_alice, online=True) is not None, "Bob never saw Alice online"
    finally:
        edge.stop()


def test_the_throttle_ignores_a_wall_clock_step(live_edge, world, clock):
    """NOTIFY pacing runs on the monotonic clock: a wall clock stepped forward (NTP, a VM
    resumed) opens no throttle window early, and the next window still opens on time."""
    phone = SipClient(live_edge.address)
    assert subscribe(phone, ENTRIES).status == 200
    assert phone.notify() is not None
    world.pump()
    make_account("dan", "+33699999999")

    def reached() -> bool:
        world.pump()
        return any(d.dirty for d in live_edge.edge.subscriptions.dialogs.values())

    assert wait_until(reached, 5, interval=0.05), "the change never reached the dialog"
    live_edge.edge.clock = lambda: time.time() + 100  # the wall clock jumps past the interval
    assert phone.notify(timeout=1.0) is None  # the throttle window is still shut
    clock.offset += 31.0  # the monotonic interval passes
    update = phone.notify(timeout=5.0)
    assert update is not None and users_in(update) == {NEWCOMER: f"sip:dan@{DOMAIN}"}


def test_a_sign_up_tells_each_list_holding_the_number_once(live_edge, world, clock):
    """A sign-up writes the account and its number's PhoneIndex item in one transaction: two
    stream records, but only the number's names the lists holding it, so each watching phone
    gets one look-again (one SQS message, one lookup), not one per record."""
    phone = SipClient(live_edge.address)
    assert subscribe(phone, ENTRIES).status == 200
    phone.notify()
    world.pump()
    messages: list[int] = []
    handlers = dict(world._handler_of)
    for logical, handler in handlers.items():
        world._handler_of[logical] = lambda event, ctx, h=handler: _counted(h, event, messages)
    try:
        make_account("dan", "+33699999999")
        assert world.pump() == 2  # the Accounts and the PhoneIndex records
    finally:
        world._handler_of.update(handlers)
    assert sum(messages) == 1


def _counted(handler, event, messages: list[int]):
    answer = handler(event, None)
    messages.append(int(answer.get("messages", 0)))
    return answer
