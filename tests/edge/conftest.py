"""Fixtures: a real SIP edge on loopback (in a thread of its own), calling the functions
in-process against moto, and accounts to authenticate with."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chalicelib import accounts
from devstack import edge_thread
from devstack.streams import StreamReplayer
from testkit.sip_client import SipClient
from testkit.wait import wait_until

DOMAIN = "example.org"
PASSWORD = "correct horse battery"


class EdgeThread(edge_thread.EdgeThread):
    """The shared harness on a free loopback port, named for the tests."""

    def __init__(self, **overrides: object) -> None:
        loopback = {"sip_host": "127.0.0.1", "sip_port": 0, "edge_id": "edge-test"}
        super().__init__(**{**loopback, **overrides})

    def has_the_answers(self, timeout: float = 5.0) -> None:
        """Wait until the edge has every phone's answer to its full state. A test phone
        answers and goes on at once; a clean stop stores only the answers the edge has."""
        assert wait_until(
            lambda: all(d.synced for d in self.edge.subscriptions.dialogs.values()), timeout
        ), "a phone's answer never reached the edge"


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


@pytest.fixture
def world(aws: None) -> StreamReplayer:
    """alice, bob (+33612345678) and carol, and the replayer of their tables' streams."""
    make_account("alice", "+33611111111")
    make_account("bob", "+33612345678")
    make_account("carol")
    return StreamReplayer()
