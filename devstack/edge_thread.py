"""A SIP edge in a thread of its own: `make run`, the tests and the live benchmark run it so.

The edge (`sip_edge.server.start`) gets its own asyncio loop in a daemon thread, calling the
functions in-process; the caller's thread keeps the REST API, moto or a test's SIP client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from chalicelib import settings

if TYPE_CHECKING:
    from sip_edge.edge import Edge
    from sip_edge.server import RunningEdge

T = TypeVar("T")


class EdgeThread:
    """Starts an edge with `settings.get()` plus `overrides`; raises what stopped it starting."""

    def __init__(self, *, start_timeout: float = 15.0, **overrides: Any) -> None:
        from sip_edge import server

        self.cfg = dataclasses.replace(settings.get(), **overrides)
        self.loop = asyncio.new_event_loop()
        self._server = server
        self._running: RunningEdge | None = None
        self._failure: BaseException | None = None
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sip-edge", daemon=True)
        self.thread.start()
        if not self._ready.wait(start_timeout):
            raise TimeoutError(f"the SIP edge did not start within {start_timeout:g} s")
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self._running = self.loop.run_until_complete(self._server.start(self.cfg))
        except BaseException as exc:  # handed to the starting thread
            self._failure = exc
            self._ready.set()
            self.loop.close()
            return
        self._ready.set()
        self.loop.run_forever()

    @property
    def running(self) -> RunningEdge:
        """The running edge and its transports."""
        assert self._running is not None
        return self._running

    @property
    def edge(self) -> Edge:
        return self.running.edge

    @property
    def ports(self) -> dict[str, int]:
        return dict(self.running.transports.ports)

    @property
    def address(self) -> tuple[str, int]:
        """Where phones reach it over UDP."""
        return (self.cfg.sip_host, self.ports["udp"])

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run `coro` on the edge's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, timeout: float = 5) -> None:
        if self._running is not None:
            self.call(self._running.stop(), timeout)
            self._running = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)
