"""Fixtures: a real SIP edge on loopback (in a thread of its own), calling the functions
in-process against moto, and accounts to authenticate with."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Iterator

import pytest

from chalicelib import accounts, settings
from tests.edge.sipclient import SipClient

DOMAIN = "example.org"
PASSWORD = "correct horse battery"


class EdgeThread:
    def __init__(self, **overrides: object) -> None:
        from sip_edge import server

        values = {"sip_host": "127.0.0.1", "sip_port": 0, "edge_id": "edge-test", **overrides}
        self.cfg = dataclasses.replace(settings.get(), **values)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self._server = server
        self.running = None
        self.thread.start()
        assert self.ready.wait(10), "edge did not start"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self.running = await self._server.start(self.cfg)
            self.ready.set()

        self.loop.run_until_complete(main())
        self.loop.run_forever()

    @property
    def edge(self):
        return self.running.edge

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.running.transports.ports["udp"])

    def call(self, coro, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.running is not None:
            self.call(self.running.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def edge(aws) -> Iterator[EdgeThread]:
    running = EdgeThread()
    yield running
    running.stop()


def make_account(username: str, phone: str | None = None) -> accounts.Account:
    creds = accounts.credentials_from_password(username, PASSWORD, DOMAIN)
    return accounts.create(username, creds, phone_e164=phone)


@pytest.fixture
def alice(aws) -> accounts.Account:
    return make_account("alice", "+33611111111")


@pytest.fixture
def client(edge) -> Iterator[SipClient]:
    c = SipClient(edge.address)
    yield c
    c.close()
