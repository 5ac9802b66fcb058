"""Self-test of the Linphone harness: the real SDK against a scripted loopback peer."""

from __future__ import annotations

import hashlib
import re
import secrets
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator

import pytest

from tests.conftest import INTEROP
from tests.linphone.client import LinphoneClient
from tests.linphone.peer import ScriptedPeer, SipMessage

pytestmark = pytest.mark.linphone

RLS = "sip:rls@example.org"
IDENTITY = "sip:alice@example.org"
PASSWORD = "secret"
# Spelled as a phone's address book would: one national number, normalised with prefix 33.
FRIENDS = {
    "Bob": "+33612345678",
    "Nina": "+33600000002",
    "Nico": "0700000001",
    "Carol": "sip:carol@example.org",
    "Dave": "sip:dave@example.org",
}
# What the captured NOTIFYs' resource URIs name, in the order the SDK sends them.
ENTRIES = [
    "sip:+33600000002@example.org;user=phone",
    "sip:+33612345678@example.org;user=phone",
    "sip:+33700000001@example.org;user=phone",
    "sip:carol@example.org",
    "sip:dave@example.org",
]
RESOURCE_LISTS = "{urn:ietf:params:xml:ns:resource-lists}"


@pytest.fixture
def peer() -> Iterator[ScriptedPeer]:
    with ScriptedPeer() as p:
        yield p


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def digest_params(header: str) -> dict[str, str]:
    return {
        k.lower(): v1 or v2 for k, v1, v2 in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]+))', header)
    }


def register(client: LinphoneClient, peer: ScriptedPeer, challenge: bool = False) -> SipMessage:
    client.account(IDENTITY, PASSWORD, peer.uri, register=True, prefix="33")
    request = peer.expect("REGISTER")
    if challenge:
        nonce = secrets.token_hex(8)
        peer.reply(
            request,
            401,
            "Unauthorized",
            [("WWW-Authenticate", f'Digest realm="example.org", nonce="{nonce}", qop="auth"')],
        )
        request = peer.expect("REGISTER")
        auth = digest_params(request.header("Authorization") or "")
        ha1 = md5(f"alice:example.org:{PASSWORD}")
        ha2 = md5(f"REGISTER:{auth['uri']}")
        expected = md5(f"{ha1}:{nonce}:{auth['nc']}:{auth['cnonce']}:{auth['qop']}:{ha2}")
        assert (auth["username"], auth["nonce"], auth["response"]) == ("alice", nonce, expected)
    peer.accept_register(request)
    client.wait_registration("Ok")
    return request


def subscribe(client: LinphoneClient, peer: ScriptedPeer) -> SipMessage:
    for name, item in FRIENDS.items():
        client.add_friend(name, item)
    client.subscribe(RLS)
    return peer.expect("SUBSCRIBE")


def accept(peer: ScriptedPeer, subscribe: SipMessage, to_tag: str) -> None:
    contact = f"<sip:rls@{peer.host}:{peer.port};transport=udp>"
    peer.reply(subscribe, 200, "OK", [("Contact", contact), ("Expires", "3600")], to_tag=to_tag)


def entries(body: bytes) -> list[str]:
    root = ET.fromstring(body)
    return [e.get("uri", "") for e in root.iter(f"{RESOURCE_LISTS}entry")]


def assert_presences_applied(client: LinphoneClient) -> None:
    assert client.presence("+33612345678") == ("open", "sip:bob@example.org")
    assert client.presence_of("+33612345678").activity == "away"
    assert client.presence("sip:carol@example.org") == ("open", "sip:carol@example.org")
    for non_user in ("+33600000002", "0700000001", "sip:dave@example.org"):
        assert client.presence(non_user) == ("none", None)


def notify_fixture(name: str) -> bytes:
    return (INTEROP / "sip" / f"{name}.raw").read_bytes()


def active_subscription(client: LinphoneClient, peer: ScriptedPeer) -> tuple[SipMessage, str]:
    """Register, subscribe FRIENDS and accept: the SUBSCRIBE and the dialog's To tag."""
    register(client, peer)
    sub = subscribe(client, peer)
    tag = secrets.token_hex(4)
    accept(peer, sub, tag)
    client.wait_subscription("Active")
    return sub, tag


def test_list_subscribe_matches_readme_and_notify_is_applied(linphone_client_factory, peer):
    client = linphone_client_factory()
    client.set_user_agent("LpclientHarness", "1.0")
    register(client, peer, challenge=True)
    sub = subscribe(client, peer)

    assert sub.request_uri == RLS
    assert sub.header("Event") == "presence"
    assert sub.header("Expires") == "3600"
    assert sub.header("Supported") == "eventlist"
    assert sub.header("Require") == "recipient-list-subscribe"
    assert sub.header("Content-Disposition") == "recipient-list"
    assert sub.header("Content-Type") == "application/resource-lists+xml"
    assert sub.header_all("Accept") == [
        "multipart/related",
        "application/pidf+xml",
        "application/rlmi+xml",
    ]
    assert sub.header("Accept-Encoding") == "deflate"
    assert sub.header("Content-Encoding") == "deflate"
    assert (sub.header("User-Agent") or "").startswith("LpclientHarness/1.0")
    assert f":{peer.port};transport=udp;lr" in (sub.header("Route") or "")
    assert int(sub.header("Content-Length") or -1) == len(sub.body)
    assert sub.body[:1] == b"\x78"  # a zlib stream (RFC 1950), not raw deflate
    assert entries(zlib.decompress(sub.body)) == ENTRIES

    tag = secrets.token_hex(4)
    accept(peer, sub, tag)
    client.wait_subscription("Active")
    mark = client.mark()
    peer.notify(sub, tag, notify_fixture("notify-accepted-plain"))
    received = client.wait_presence_received(after=mark)
    assert peer.expect("NOTIFY", status=200)
    assert {f["name"] for f in received["friends"]} == {"Bob", "Carol"}
    assert_presences_applied(client)


def test_deflated_notify_is_applied(linphone_client_factory, peer):
    client = linphone_client_factory()
    sub, tag = active_subscription(client, peer)
    template = notify_fixture("notify-accepted-deflate")
    assert b"Content-Encoding: deflate" in template
    peer.notify(sub, tag, template)
    client.wait_presence_received()
    assert peer.expect("NOTIFY", status=200)
    assert_presences_applied(client)


def test_lowercase_event_header_is_answered_but_ignored(linphone_client_factory, peer):
    client = linphone_client_factory()
    sub, tag = active_subscription(client, peer)
    mark = client.mark()
    peer.notify(sub, tag, notify_fixture("notify-accepted-plain"), event="presence")
    assert peer.expect("NOTIFY", status=200)
    client.iterate(300)
    assert not [e for e in client.events[mark:] if e["event"] == "presence_received"]
    assert client.presence("+33612345678") == ("none", None)


def test_unsubscribe_is_in_dialog_without_body(linphone_client_factory, peer):
    client = linphone_client_factory()
    sub, tag = active_subscription(client, peer)
    client.unsubscribe()
    unsub = peer.expect("SUBSCRIBE")
    assert unsub.header("Expires") == "0"
    assert unsub.header("Call-ID") == sub.header("Call-ID")
    assert unsub.request_uri == f"sip:rls@{peer.host}:{peer.port};transport=udp"
    assert f"tag={tag}" in (unsub.header("To") or "")
    assert unsub.body == b""
    assert unsub.header("Content-Encoding") == "deflate"
    assert unsub.header("Require") == "recipient-list-subscribe"
    peer.reply(unsub)
    client.wait_subscription("Terminated")


def test_adding_a_contact_restarts_the_list_with_learned_contacts(linphone_client_factory, peer):
    """Surprise: a NOTIFY's <contact> joins the list the SDK subscribes to next time."""
    client = linphone_client_factory()
    sub, tag = active_subscription(client, peer)
    peer.notify(sub, tag, notify_fixture("notify-accepted-plain"))
    client.wait_presence_received()
    assert peer.expect("NOTIFY", status=200)

    client.add_friend("Eve", "+33611111111")
    unsub = peer.expect("SUBSCRIBE")
    assert (unsub.header("Call-ID"), unsub.header("Expires")) == (sub.header("Call-ID"), "0")
    peer.reply(unsub)
    fresh = peer.expect("SUBSCRIBE")
    assert fresh.header("Call-ID") != sub.header("Call-ID")
    assert fresh.request_uri == RLS and "tag=" not in (fresh.header("To") or "")
    assert entries(zlib.decompress(fresh.body)) == sorted(
        [*ENTRIES, "sip:+33611111111@example.org;user=phone", "sip:bob@example.org"]
    )


def test_subscribe_without_register_when_configured(linphone_client_factory, peer):
    client = linphone_client_factory({"sip.subscribe_presence_only_when_registered": 0})
    client.account(IDENTITY, None, peer.uri, register=False, prefix="33")
    sub = subscribe(client, peer)
    assert entries(zlib.decompress(sub.body)) == ENTRIES
    assert not [m for m in peer.received if m.method == "REGISTER"]


def test_plain_body_when_deflate_is_turned_off(linphone_client_factory, peer):
    client = linphone_client_factory({"sip.handle_content_encoding": "none"})
    register(client, peer)
    sub = subscribe(client, peer)
    assert sub.header("Content-Encoding") is None
    assert sub.header("Accept-Encoding") is None
    assert entries(sub.body) == ENTRIES
