"""Hypothesis drives the presence core through random event sequences (SUBSCRIBEs, refreshes,
changes, revocations, lost connections, ticks, stops) with every action's outcome handed back
in any order, and checks what must always hold:

- every queue message is acknowledged or released exactly once, by the end;
- never two NOTIFY transactions out for one dialog, and their CSeqs strictly increase;
- nothing is sent for a dialog after its final NOTIFY, nor once it is terminated;
- at most EDGE_NOTIFY_CONCURRENCY updates in progress;
- a dialog's record is deleted only once no write of it is out (none would bring it back);
- a forgotten dialog is out of the table, and every dialog ends once its time is up.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from sip_edge.dialog import DialogState, Peer, SubscriptionDialog, WorkKind
from sip_edge.handling import Reject
from sip_edge.presence.actions import (
    Ack,
    Action,
    Delete,
    Lookup,
    Opening,
    Release,
    SendNotify,
    Store,
)
from tests.presence_core.harness import (
    ENTRIES,
    REFUSED,
    Clock,
    answer,
    make_core,
    resource,
    subscribe_request,
)

CONCURRENCY = 2
PEERS = [Peer("udp", "192.0.2.10", 5062), Peer("tcp", "192.0.2.11", 5070, connection=7)]


class CoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.core = make_core(self.clock, edge_notify_concurrency=CONCURRENCY,
                              subscribe_max_dialogs_per_account=6)  # fmt: skip
        self.pending: list[Action] = []
        self.dialogs: list[SubscriptionDialog] = []
        self.remote_cseq: dict[str, int] = {}
        self.receipts: set[str] = set()
        self.settled: Counter[str] = Counter()
        self.last_cseq: dict[str, int] = {}
        self.out: Counter[str] = Counter()
        self.final: set[str] = set()
        self.writes: Counter[str] = Counter()
        self.deleted: set[str] = set()
        self.stopped = False

    # --- what the core answers, checked as it comes ------------------------------------------

    def take(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, SendNotify):
                sid = action.dialog.subscription_id
                assert self.out[sid] == 0, "two NOTIFY transactions out for one dialog"
                assert sid not in self.final, "a NOTIFY after the final one"
                assert action.dialog.state is not DialogState.TERMINATED
                seq = action.request.cseq.seq
                assert seq > self.last_cseq.get(sid, 0), "CSeq not increasing"
                self.last_cseq[sid] = seq
                if action.final:
                    assert "terminated" in action.request.headers.get("Subscription-State")
                    self.final.add(sid)
                self.out[sid] += 1
                self.pending.append(action)
            elif isinstance(action, Store):
                sid = action.dialog.subscription_id
                assert sid not in self.deleted, "a write after the delete"
                self.writes[sid] += 1
                self.pending.append(action)
            elif isinstance(action, Lookup):
                assert action.dialog.state is not DialogState.TERMINATED
                self.pending.append(action)
            elif isinstance(action, Delete):
                assert self.writes[action.subscription_id] == 0, "a delete before a write landed"
                self.deleted.add(action.subscription_id)
            else:
                assert isinstance(action, Ack | Release)
                for receipt in action.receipts:
                    assert receipt in self.receipts
                    self.settled[receipt] += 1
                    assert self.settled[receipt] == 1, f"{receipt} settled twice"

    def pick(self, index: int) -> SubscriptionDialog:
        """A dialog the edge holds, mostly; now and then one that is over."""
        live = [d for d in self.dialogs if d.live]
        pool = live if live and index % 8 else self.dialogs
        return pool[index % len(pool)]

    # --- events ------------------------------------------------------------------------------

    @initialize(count=st.integers(1, 4))
    def phones_subscribed(self, count):
        """A few dialogs up and synced to start with (the interesting events need them)."""
        for _ in range(count):
            self.subscribe(False, 1, PEERS[0], set(), False)
            while self.pending:
                self.take(self.complete(self.pending.pop(0), 0, set()))

    @rule(
        fetch=st.sampled_from([False, False, False, True]), parts=st.integers(1, 3),
        peer=st.sampled_from(PEERS), known=st.sets(st.sampled_from(ENTRIES)),
        refused=st.sampled_from([False, False, False, True]),
    )  # fmt: skip
    def subscribe(self, fetch, parts, peer, known, refused):
        request = subscribe_request(entries=ENTRIES, expires=0 if fetch else 600)
        try:
            opening = self.core.subscribe(request, peer, "alice@example.org")
        except Reject as rej:
            assert rej.status == 403  # the per-account cap
            return
        assert isinstance(opening, Opening)
        if refused:
            try:
                self.core.opened(opening, REFUSED)
            except Reject:
                return
            raise AssertionError("a refused lookup was accepted")
        found = [resource(u, f"sip:{u[4:9]}@x" if u in known else None) for u in ENTRIES]
        reply = self.core.opened(opening, answer(found, parts=parts))
        assert reply.response.status == 200
        self.dialogs.append(opening.dialog)
        self.remote_cseq[opening.dialog.subscription_id] = 1
        self.take(reply.then)

    @precondition(lambda self: self.dialogs)
    @rule(index=st.integers(0, 50), unsubscribe=st.sampled_from([False, False, False, True]),
          peer=st.sampled_from(PEERS))  # fmt: skip
    def refresh(self, index, unsubscribe, peer):
        dialog = self.pick(index)
        sid = dialog.subscription_id
        self.remote_cseq[sid] += 1
        request = subscribe_request(
            call_id=dialog.call_id, to_tag=dialog.local_tag, cseq=self.remote_cseq[sid],
            expires=0 if unsubscribe else 600,
        )  # fmt: skip
        try:
            reply = self.core.subscribe(request, peer, "alice@example.org")
        except Reject as rej:
            assert rej.status == 481 and not dialog.live
            return
        assert not isinstance(reply, Opening) and dialog.live or unsubscribe
        self.take(reply.then)

    @precondition(lambda self: self.dialogs and not self.stopped)
    @rule(index=st.integers(0, 50),
          uris=st.sets(st.sampled_from([*ENTRIES, *ENTRIES, "sip:x@y"]), min_size=1))  # fmt: skip
    def change(self, index, uris):
        dialog = self.pick(index)
        receipt = f"r{len(self.receipts)}"
        self.receipts.add(receipt)
        message = {"subscription_id": dialog.subscription_id, "uris": sorted(uris)}
        self.take(self.core.queue_messages([(message, receipt)]))

    @precondition(lambda self: self.dialogs and not self.stopped)
    @rule(uri=st.sampled_from(ENTRIES))
    def popular_change(self, uri):
        """A contact many lists hold changes: a message for every dialog."""
        messages = []
        for dialog in self.dialogs:
            receipt = f"r{len(self.receipts)}"
            self.receipts.add(receipt)
            messages.append(({"subscription_id": dialog.subscription_id, "uris": [uri]}, receipt))
        self.take(self.core.queue_messages(messages))

    @precondition(lambda self: self.dialogs and not self.stopped)
    @rule(index=st.integers(0, 50), someone_else=st.sampled_from([False, True, True]))
    def revoke(self, index, someone_else):
        dialog = self.pick(index)
        receipt = f"r{len(self.receipts)}"
        self.receipts.add(receipt)
        message = {"kind": "revoke", "reason": "rejected",
                   "subscriber": "bob@example.org" if someone_else else "ALICE@example.org",
                   "subscription_ids": [dialog.subscription_id]}  # fmt: skip
        self.take(self.core.queue_messages([(message, receipt)]))

    @rule(now=st.integers(0, 5))
    def connection_lost(self, now):
        if now == 0:  # now and then (rules are drawn about evenly)
            self.take(self.core.connection_lost(PEERS[1]))

    @rule(seconds=st.sampled_from([0.0, 0.0, 0.0, 0.0, 0.5, 30.0, 700.0]))
    def tick(self, seconds):
        self.clock.advance(seconds)
        self.take(self.core.tick(self.clock.wall))

    @precondition(lambda self: self.pending)
    @rule(index=st.integers(0, 50), outcome=st.sampled_from([0, 0, 0, 0, 1, 1, 2, 3, 3]),
          users=st.sets(st.sampled_from(ENTRIES)))  # fmt: skip
    def outcome(self, index, outcome, users):
        self.take(self.complete(self.pending.pop(index % len(self.pending)), outcome, users))

    @precondition(lambda self: not self.stopped)
    @rule(now=st.integers(0, 9))
    def stop(self, now):
        if now:
            return
        self.stopped = True
        self.take(self.core.release())
        self.take(self.core.synced_writes())

    # --- outcomes ----------------------------------------------------------------------------

    def complete(self, action: Action, outcome: int, users: set[str]) -> list[Action]:
        """Outcome 0 and 1: success (1: a lookup gives two NOTIFYs); 2: a refusal or a
        failure; 3: a timeout or a failure."""
        if isinstance(action, SendNotify):
            self.out[action.dialog.subscription_id] -= 1
            return self.core.notified(action, (200, 200, 481, 408)[outcome])
        if isinstance(action, Store):
            self.writes[action.dialog.subscription_id] -= 1
            return self.core.stored(action, outcome < 2)
        assert isinstance(action, Lookup)
        if outcome == 2:
            return self.core.looked_up(action, REFUSED)
        if outcome == 3:
            return self.core.lookup_failed(action)
        payload = action.payload
        uris = payload.get("entries", ENTRIES)
        found = [resource(u, f"sip:{u[4:9]}@x" if u in users else None) for u in uris]
        full = payload.get("full_state", True)
        parts = 1 + outcome
        return self.core.looked_up(
            action, answer(found, version=payload["version"], full=full, parts=parts)
        )

    # --- always ------------------------------------------------------------------------------

    @invariant()
    def updates_within_the_cap(self):
        working = [d for d in self.core.dialogs.values()
                   if d.work is not None and d.work.kind is WorkKind.UPDATE]  # fmt: skip
        assert self.core.updating == len(working) <= CONCURRENCY

    @invariant()
    def the_table_holds_no_dialog_that_is_over(self):
        assert all(d.state is not DialogState.TERMINATED for d in self.core.dialogs.values())
        assert len(self.core.dialogs) == len({id(d) for d in self.core.dialogs.values()})

    def teardown(self):
        """Everything answered well, time runs out: every dialog ends, every message settles."""
        for _ in range(200):
            while self.pending:
                self.take(self.complete(self.pending.pop(0), 0, set()))
            self.clock.advance(1000)
            self.take(self.core.tick(self.clock.wall))
            if not self.pending and not self.core.dialogs:
                break
        assert not self.core.dialogs and not self.pending, "a dialog never ended"
        written = {sid for sid, count in self.writes.items()}
        assert written <= self.deleted, "a dialog that was written is over but not deleted"
        self.take(self.core.release())
        assert set(self.settled) == self.receipts, "a queue message never settled"


CoreMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
test_presence_core_event_sequences = CoreMachine.TestCase
