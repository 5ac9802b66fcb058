"""Presence subscriptions on the event loop: the asyncio driver of the presence core.

`sip_edge.presence.core.PresenceCore` decides everything about the edge's subscription dialogs
(RFC 6665, RFC 4662, RFC 5367) and answers actions; this module carries them out (function
calls, NOTIFY transactions, queue acknowledgements), hands each outcome back to the core, and
owns what takes time: the reload after a restart, the queue's long poll, a clean stop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from chalicelib import edge_contract as contract
from chalicelib.observability import logger
from sip_edge.dialog import Peer, SubscriptionDialog
from sip_edge.fail_fast import FunctionError
from sip_edge.handling import EdgeServices
from sip_edge.presence import subscribe
from sip_edge.presence.actions import (
    Ack,
    Action,
    Delete,
    Lookup,
    Opening,
    Release,
    Reply,
    SendNotify,
    Store,
)
from sip_edge.presence.core import PresenceCore
from sip_edge.presence.table import DialogTable
from sip_edge.queue import EdgeQueue
from sip_edge.sip.message import Request


class SubscriptionService:
    """The subscription dialogs of one edge, driven: the core's actions carried out."""

    def __init__(self, edge: EdgeServices, queue: EdgeQueue | None = None) -> None:
        self.edge = edge
        self.queue = queue
        # The edge's clocks are read at each use: tests move them on a running edge.
        self.core = PresenceCore(
            edge.cfg, edge, clock=lambda: edge.clock(), pacing=lambda: edge.pacing(),
            stats=edge.stats,
        )  # fmt: skip

    @property
    def dialogs(self) -> DialogTable:
        return self.core.dialogs

    # --- SUBSCRIBE -------------------------------------------------------------------------

    def check(self, request: Request) -> None:
        subscribe.check(request, self.edge.cfg)

    def live_dialog(self, request: Request) -> SubscriptionDialog | None:
        return self.core.live_dialog(request)

    async def handle(self, request: Request, peer: Peer, identity: str) -> Reply:
        """Answer an authenticated SUBSCRIBE: the response, and what follows it (the write,
        the NOTIFYs), which the edge hands to `follow` once the response is sent. A new
        dialog's first lookup is made here, within the request's deadline: if it fails, the
        phone gets 503 and the edge holds nothing."""
        step = self.core.subscribe(request, peer, identity)
        if isinstance(step, Opening):
            answer = await contract.PRESENCE_LOOKUP.ask(self.edge.functions, step.lookup)
            step = self.core.opened(step, answer)
        return step

    # --- events ------------------------------------------------------------------------------

    def revoke(self, message: dict[str, Any]) -> int:
        """End the dialogs a `revoke` message lists (see PresenceCore.revoke)."""
        ended, actions = self.core.revoke(message)
        self._carry_out(actions)
        return ended

    def on_connection_lost(self, peer: Peer) -> None:
        self._carry_out(self.core.connection_lost(peer))

    def sweep(self, now: float) -> None:
        self._carry_out(self.core.tick(now))

    # --- carrying out actions ---------------------------------------------------------------

    def _carry_out(self, actions: Iterable[Action]) -> None:
        """Each action in a task of its own."""
        for action in actions:
            self.edge.spawn(self.follow([action]))

    async def follow(self, actions: list[Action]) -> None:
        """Carry out the first action, hand its outcome to the core, and go on with what the
        core answers, in this task (a chain such as write, NOTIFY, write costs no task); the
        others in tasks of their own."""
        while actions:
            first, *others = actions
            self._carry_out(others)
            actions = await self._do(first)

    async def _do(self, action: Action) -> list[Action]:
        """One action; the core's answer to its outcome. Whatever fails counts as the
        action's failure, so that the core never waits for an outcome that will not come."""
        if isinstance(action, SendNotify):
            return self.core.notified(action, await self._send(action))
        if isinstance(action, Lookup):
            try:
                answer = await contract.PRESENCE_LOOKUP.ask(self.edge.functions, action.payload)
            except Exception as exc:  # FunctionError, or a bug: the next tick tries again
                logger.warning("presence lookup failed (%s): tried again later", exc)
                return self.core.lookup_failed(action)
            return self.core.looked_up(action, answer)
        if isinstance(action, Store):
            return self.core.stored(action, await self._store(action))
        if isinstance(action, Delete):
            await self._delete(action.subscription_id)
        elif isinstance(action, Ack) and self.queue is not None:
            await self.queue.ack(action.receipts)  # a failure: the changes come back, harmless
        elif isinstance(action, Release) and self.queue is not None:
            await self.queue.release(action.receipts)
        return []

    async def _send(self, action: SendNotify) -> int:
        """One NOTIFY transaction: its final status (408 on timeout, 500 if it could not go)."""
        self.edge.stats["notifies"] += 1
        try:
            status = await self.edge.request(action.request, action.dialog.peer)
        except Exception:
            logger.exception("NOTIFY could not be sent")
            status = 500
        ok = 200 <= status < 300
        self.edge.metrics.notify(ok)
        if not ok:
            self.edge.stats["notify_failures"] += 1
        return status

    async def _store(self, action: Store) -> bool:
        try:
            answer = await contract.SIP_SUBSCRIPTIONS.ask(self.edge.functions, action.payload)
        except Exception as exc:  # FunctionError, or a bug
            answer = {"error": {"code": "unavailable", "message": str(exc)}}
        if "error" in answer:
            # The dialog still works from memory; only a restart would lose it.
            logger.warning("could not store subscription: %s", answer["error"])
            return False
        return True

    async def _delete(self, subscription_id: str) -> None:
        delete: contract.SubscriptionDelete = {"op": "delete", "subscription_id": subscription_id}
        try:
            await contract.SIP_SUBSCRIPTIONS.ask(self.edge.functions, delete)
        except FunctionError as exc:
            logger.warning("could not delete subscription: %s", exc)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume the UDP dialogs this edge owned before a restart, and listen to its queue.

        The reload waits at most EDGE_RELOAD_WAIT seconds; past that (an outage, a slow
        backend) the edge serves new requests while it goes on retrying with backoff, and
        resumes the dialogs once they come.
        """
        reload = asyncio.get_running_loop().create_task(self._resume())
        self.edge.spawn(self._watch(reload))
        try:
            await asyncio.wait_for(asyncio.shield(reload), self.edge.cfg.edge_reload_wait)
        except TimeoutError:
            logger.warning("dialogs not reloaded yet: serving meanwhile, still retrying")
        if self.queue is not None:
            await self.queue.open(self.edge.edge_id)
            self.edge.spawn(self._poll_queue())

    @staticmethod
    async def _watch(reload: asyncio.Task[None]) -> None:
        await reload  # keeps the reload owned (and cancelled at shutdown) by the edge

    async def _resume(self) -> None:
        started = time.monotonic()
        cursor: str | None = None
        pages = 0
        while True:
            pages += 1
            answer = await self._load_page(cursor)
            for action in self.core.reloaded(answer):  # one at a time: no burst of deletes
                await self.follow([action])
            cursor = answer.get("next")
            if not cursor:
                break
        resumed = self.core.reload_done()
        if self.edge.stats.get("unreadable"):
            logger.warning("%d stored dialogs unreadable: deleted", self.edge.stats["unreadable"])
        # The one sign, in the logs, that a restarted edge holds its dialogs again.
        logger.info(
            "dialogs reloaded",
            extra={"dialogs": resumed, "pages": pages,
                   "seconds": round(time.monotonic() - started, 3)},
        )  # fmt: skip

    async def _load_page(self, cursor: str | None) -> contract.SubscriptionsAnswer:
        """One page of this edge's stored dialogs; while the backend is down or answers an
        error, try again with backoff (an edge restarted in an outage must not give up its
        dialogs: their phones would hear nothing until they subscribe again)."""
        pause = 0.5
        load = self.core.load_request(cursor)
        while True:
            try:
                answer = await contract.SIP_SUBSCRIPTIONS.ask(self.edge.functions, load)
                if "error" not in answer:
                    return answer
                problem: object = answer["error"]
            except FunctionError as exc:
                problem = exc
            logger.warning("could not load this edge's dialogs (%s); retrying", problem)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)

    async def _poll_queue(self) -> None:
        """Long-poll this edge's queue: each message names resources to look at again."""
        assert self.queue is not None
        while True:
            try:
                messages = await self.queue.receive()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("edge queue poll failed; retrying")
                await asyncio.sleep(1)
                continue
            self._carry_out(self.core.queue_messages(messages))

    def close(self) -> None:
        if self.queue is not None:
            self.queue.close()

    async def release_pending(self) -> None:
        """At shutdown: changes not yet notified go back to the queue for the next edge."""
        await self.follow(self.core.release())

    async def record_synced(self) -> int:
        """At shutdown: store the dialogs whose phones answered a full state since their last
        write, EDGE_NOTIFY_CONCURRENCY at a time, for at most EDGE_STOP_WAIT seconds.
        Answers how many were stored."""
        writes = self.core.synced_writes()
        gate = asyncio.Semaphore(max(1, self.edge.cfg.edge_notify_concurrency))

        async def store(action: Store) -> None:
            async with gate:
                self._carry_out(self.core.stored(action, await self._store(action)))

        try:
            await asyncio.wait_for(
                asyncio.gather(*(store(w) for w in writes)), self.edge.cfg.edge_stop_wait
            )
        except TimeoutError:
            logger.warning("stopped before storing every synced dialog; the next edge resyncs")
        stored = sum(w.dialog.synced_stored for w in writes)
        self.edge.stats["synced_at_stop"] = stored
        return stored
