"""Live contact lists with the real Linphone SDK 5.1: a number that was not a user becomes one
while the phone stays subscribed (no re-SUBSCRIBE), and goes back when its owner unlinks it.

The stack is the local one: REST sign-up on moto, moto's DynamoDB streams replayed into the
stream handlers, the edge's SQS queue on moto, and the real edge on loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

from devstack.streams import StreamReplayer
from testkit.wait import wait_until
from tests.accounts_support import basic, sign_up
from tests.edge.conftest import DOMAIN, EdgeThread
from tests.linphone.client import LinphoneClient
from tests.linphone.test_edge_linphone import PASSWORD, RLS, RecordingFunctions

pytestmark = pytest.mark.linphone

ZOE_PHONE = "+33677777777"
ZOE_NATIONAL = "0677777777"


@pytest.fixture
def stack(api: Client) -> Iterator[tuple[EdgeThread, RecordingFunctions]]:
    sign_up(api, "+33611111111", "alice", PASSWORD)
    sign_up(api, "+33612345678", "bob", PASSWORD)
    replayer = StreamReplayer()
    stop_replayer = replayer.start()
    edge = EdgeThread(notify_min_interval=0.2)
    recorder = RecordingFunctions(edge.edge.functions)
    edge.edge.functions = recorder
    yield edge, recorder
    edge.stop()
    stop_replayer()


def presence_of(client: LinphoneClient, key: str) -> tuple[str, str | None]:
    return client.presence(key)


def test_new_user_appears_then_goes_back_without_resubscribing(
    linphone_client_factory: Any, stack: tuple[EdgeThread, RecordingFunctions], api: Client
) -> None:
    edge, recorder = stack
    client: LinphoneClient = linphone_client_factory()
    mark = client.mark()
    client.account(
        f"sip:alice@{DOMAIN}", PASSWORD, f"sip:127.0.0.1:{edge.address[1]};transport=udp",
        prefix="33",
    )  # fmt: skip
    client.wait_registration("Ok", after=mark)
    client.add_friend("Bob", "0612345678")
    client.add_friend("Zoe", ZOE_NATIONAL)
    client.subscribe(RLS)
    client.wait_presence_received(after=mark)
    assert presence_of(client, "0612345678") == ("open", f"sip:bob@{DOMAIN}")
    assert presence_of(client, ZOE_NATIONAL) == ("none", None)
    (dialog,) = edge.edge.subscriptions.dialogs.values()

    sign_up(api, ZOE_PHONE, "zoe", PASSWORD)
    assert wait_until(
        lambda: presence_of(client, ZOE_NATIONAL) == ("open", f"sip:zoe@{DOMAIN}"), 15
    ), "the new user never appeared"
    assert presence_of(client, "0612345678") == ("open", f"sip:bob@{DOMAIN}")

    r = api.http.delete("/v1/accounts/me/phone", headers=basic("zoe", PASSWORD))
    assert r.status_code == 204, r.body
    assert wait_until(lambda: presence_of(client, ZOE_NATIONAL)[1] is None, 15), (
        "the unlinked number still shows as a user"
    )
    assert presence_of(client, "0612345678") == ("open", f"sip:bob@{DOMAIN}")

    # One dialog all along: the updates came as NOTIFYs, never as a new SUBSCRIBE.
    assert list(edge.edge.subscriptions.dialogs) == [dialog.subscription_id]
    subscribes = [p for p, _ in recorder.of("presence_lookup") if "list_b64" in p]
    assert len(subscribes) == 1
