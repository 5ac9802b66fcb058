"""The real Linphone SDK 5.1 applies the NOTIFY bodies presence_lookup builds for its SUBSCRIBE.

The scripted peer plays the SIP side; the bodies come from `presence_lookup` on moto with bob
(+33612345678) and carol as users, exactly as the edge would send them.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from chalicelib.api import presence_lookup
from chalicelib.presence import notify
from chalicelib.presence.notify import ResourceState, User
from tests.linphone.client import LinphoneClient
from tests.linphone.peer import ScriptedPeer, SipMessage
from tests.linphone.test_harness import ENTRIES, active_subscription, assert_presences_applied
from tests.presence_helpers import seed_fixture_users

pytestmark = pytest.mark.linphone


@pytest.fixture
def peer() -> Iterator[ScriptedPeer]:
    with ScriptedPeer() as p:
        yield p


def wire(content_type: str, encoding: str | None, body: bytes) -> bytes:
    """A NOTIFY template for the peer: it fills in the dialog headers."""
    lines = [
        "NOTIFY sip:placeholder SIP/2.0",
        "Event: Presence",
        "Subscription-State: active;expires=3600",
        "Require: eventlist",
        f"Content-Type: {content_type}",
    ]
    if encoding:
        lines.append(f"Content-Encoding: {encoding}")
    lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


def lookup(sub: SipMessage, **extra: object) -> dict:
    answer = presence_lookup.handle(
        {
            "subscriber": "sip:alice@example.org",
            "list_uri": "sip:rls@example.org",
            "list_b64": base64.b64encode(sub.body).decode(),
            "content_encoding": sub.header("Content-Encoding"),
            "accept_encoding": sub.header_all("Accept-Encoding"),
            "profile": "linphone",
            "version": 0,
            **extra,
        }
    )
    assert "error" not in answer, answer
    return answer


def send(client: LinphoneClient, peer: ScriptedPeer, sub: SipMessage, tag: str, body: dict) -> None:
    mark = client.mark()
    raw = base64.b64decode(body["body_b64"])
    peer.notify(sub, tag, wire(body["content_type"], body["content_encoding"], raw))
    client.wait_presence_received(after=mark)
    assert peer.expect("NOTIFY", status=200)


@pytest.mark.parametrize("deflate", [True, False], ids=["deflate", "plain"])
def test_linphone_applies_our_full_state_notify(aws, linphone_client_factory, peer, deflate):
    seed_fixture_users()
    client = linphone_client_factory()
    sub, tag = active_subscription(client, peer)
    answer = lookup(sub, accept_encoding=["deflate"] if deflate else [])
    assert answer["entries"] == ENTRIES
    (body,) = answer["bodies"]
    assert body["content_encoding"] == ("deflate" if deflate else None)
    send(client, peer, sub, tag, body)
    assert_presences_applied(client)


def test_linphone_applies_a_full_state_split_into_partial_notifies(
    aws, linphone_client_factory, peer
):
    seed_fixture_users()
    client = linphone_client_factory()
    sub, tag = active_subscription(client, peer)
    answer = lookup(sub, limits={"notify_limit": 1})
    assert [b["full_state"] for b in answer["bodies"]] == [True, False]
    for body in answer["bodies"]:
        send(client, peer, sub, tag, body)
    assert_presences_applied(client)


def test_linphone_applies_a_partial_notify_announcing_a_new_user(
    aws, linphone_client_factory, peer
):
    seed_fixture_users()
    client = linphone_client_factory()
    sub, tag = active_subscription(client, peer)
    answer = lookup(sub)
    send(client, peer, sub, tag, answer["bodies"][0])
    (partial,) = notify.build(
        "sip:rls@example.org",
        [ResourceState(ENTRIES[0], User("sip:nina@example.org"))],
        version=answer["version"],
        full_state=False,
        options=notify.BodyOptions(deflate=True),
    )
    send(
        client,
        peer,
        sub,
        tag,
        {
            "body_b64": base64.b64encode(partial.body).decode(),
            "content_type": partial.content_type,
            "content_encoding": partial.content_encoding,
        },
    )
    assert client.presence("+33600000002") == ("open", "sip:nina@example.org")
    assert client.presence("+33612345678") == ("open", "sip:bob@example.org")


@pytest.mark.parametrize("non_user", ["bare", "terminated"])
def test_a_partial_notify_cannot_take_a_user_back_a_full_state_one_does(
    aws, linphone_client_factory, peer, non_user
):
    """For the live-update code: Linphone 5.1 ignores a partial "not a user" (a bare resource
    or a terminated instance) and keeps the old presence; only a full-state NOTIFY clears it."""
    seed_fixture_users()
    client = linphone_client_factory()
    sub, tag = active_subscription(client, peer)
    answer = lookup(sub)
    send(client, peer, sub, tag, answer["bodies"][0])
    bob = ENTRIES[1]
    (partial,) = notify.build(
        "sip:rls@example.org",
        [ResourceState(bob)],
        version=1,
        full_state=False,
        options=notify.BodyOptions(non_user=non_user),
    )
    mark = client.mark()
    peer.notify(sub, tag, wire(partial.content_type, partial.content_encoding, partial.body))
    assert peer.expect("NOTIFY", status=200)
    client.iterate(300)
    assert client.presence("+33612345678") == ("open", "sip:bob@example.org")

    states = [ResourceState(u) for u in ENTRIES]
    states[3] = ResourceState(ENTRIES[3], User("sip:carol@example.org"))
    (full,) = notify.build("sip:rls@example.org", states, version=2)
    mark = client.mark()
    peer.notify(sub, tag, wire(full.content_type, full.content_encoding, full.body))
    client.wait_presence_received(after=mark)
    assert peer.expect("NOTIFY", status=200)
    assert client.presence("+33612345678") == ("none", None)
    assert client.presence("sip:carol@example.org") == ("open", "sip:carol@example.org")
